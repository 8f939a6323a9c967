//! Capped sites: a subscriber behind a real, kernel-enforced link. Each capped
//! participant runs on its own thread, which moves itself into a fresh
//! network namespace (`unshare(CLONE_NEWNET)`; the sockets its peer
//! connection opens live there) joined to the tool's namespace by a veth pair.
//! The tool's end of the pair shapes the site's downlink with `tc tbf`, and
//! the site's namespace drops a share of incoming UDP with an nftables
//! `numgen random` rule (this kernel has no `netem`; ../shared/TESTING.md).
//!
//! The server then listens on `SERVER_IP`, an address on `lo` in
//! the tool's namespace, which both the capped sites (over their veth) and
//! the others (locally) reach. Since that changes the namespace's interfaces,
//! capped sites need the tool in a private network namespace of its own
//! (`unshare -n`); `check_private_namespace` refuses otherwise. Everything
//! made here goes away with the site's thread (its namespace and veth) or is
//! deleted at the step's end (the address), and all of it with the tool's
//! private namespace when the process exits.

use anyhow::{anyhow, bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// The server's address when some sites are capped.
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 98, 0, 1));
/// At most this many capped sites (one /24 each in 10.99.0.0/16).
pub const MAX_CAPPED: usize = 200;

/// The shaping of every capped site's downlink.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Cap {
    pub kbps: u32,
    pub loss_pct: f64,
}

/// Capped site `k`'s own address (its end of the veth).
pub fn site_ip(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 99, k as u8, 2))
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The tool must be alone in its network namespace (only `lo`, and what an
/// earlier step of this run made), so nothing here touches real interfaces.
pub fn check_private_namespace() -> Result<()> {
    // /sys/class/net shows the namespace sysfs was mounted in; this file
    // shows the calling thread's.
    let dev = std::fs::read_to_string("/proc/thread-self/net/dev")?;
    let foreign: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_owned()))
        .filter(|n| n != "lo" && !n.starts_with("lth"))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "capped sites need a private network namespace (found {}): run the tool as \
             unshare -n sh -c 'ip link set lo up && exec loadtest …'",
            foreign.join(", ")
        );
    }
    Ok(())
}

/// The server's address, in the tool's namespace.
/// (This kernel has no `dummy` interfaces, so it goes on the private `lo`.)
pub fn add_server_address() -> Result<()> {
    remove_server_address();
    run(&["ip", "addr", "add", &format!("{SERVER_IP}/32"), "dev", "lo"])
}

pub fn remove_server_address() {
    let _ = run(&["ip", "addr", "del", &format!("{SERVER_IP}/32"), "dev", "lo"]);
}

/// Move the calling thread into a new network namespace for capped site `k`,
/// joined to the tool's namespace (the process's main thread's) by a veth
/// whose tool end shapes the downlink to `cap`. Call on a thread of its own,
/// before it opens any socket; returns the veth's name inside the site's namespace.
pub fn enter_capped_namespace(k: usize, cap: Cap) -> Result<String> {
    if k >= MAX_CAPPED {
        bail!("at most {MAX_CAPPED} capped sites");
    }
    let pid = std::process::id().to_string();
    let tool_end = format!("lth{k}");
    let site_end = format!("ltc{k}");
    // A leftover from an earlier step of this run would clash by name.
    let _ = run(&["nsenter", "-t", &pid, "-n", "ip", "link", "del", &tool_end]);
    // SAFETY: unshare only changes this thread's namespaces; no memory is shared.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(anyhow!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    // Child processes inherit this thread's namespace.
    let (site_addr, tool_addr) = (format!("10.99.{k}.2/24"), format!("10.99.{k}.1"));
    run(&["ip", "link", "set", "lo", "up"])?;
    run(&[
        "ip", "link", "add", &site_end, "type", "veth", "peer", "name", &tool_end, "netns", &pid,
    ])?;
    run(&["ip", "addr", "add", &site_addr, "dev", &site_end])?;
    run(&["ip", "link", "set", &site_end, "up"])?;
    let in_tool = |args: &[&str]| {
        let mut all = vec!["nsenter", "-t", &pid, "-n"];
        all.extend_from_slice(args);
        run(&all)
    };
    in_tool(&[
        "ip",
        "addr",
        "add",
        &format!("{tool_addr}/24"),
        "dev",
        &tool_end,
    ])?;
    in_tool(&["ip", "link", "set", &tool_end, "up"])?;
    run(&["ip", "route", "add", "default", "via", &tool_addr])?;
    // The downlink: everything the tool's namespace sends the site.
    in_tool(&[
        "tc",
        "qdisc",
        "add",
        "dev",
        &tool_end,
        "root",
        "tbf",
        "rate",
        &format!("{}kbit", cap.kbps.max(8)),
        "burst",
        "32kb",
        "latency",
        "200ms",
    ])?;
    if cap.loss_pct > 0.0 {
        // numgen random mod 1000 < per-mille: 1 % is 10.
        let per_mille = ((cap.loss_pct * 10.0).round() as u32).clamp(1, 1000);
        run(&["nft", "add", "table", "inet", "ltcap"])?;
        run(&[
            "nft",
            "add",
            "chain",
            "inet",
            "ltcap",
            "input",
            "{ type filter hook input priority 0 ; policy accept ; }",
        ])?;
        run(&[
            "nft",
            "add",
            "rule",
            "inet",
            "ltcap",
            "input",
            "meta",
            "l4proto",
            "udp",
            "numgen",
            "random",
            "mod",
            "1000",
            "<",
            &per_mille.to_string(),
            "drop",
        ])?;
    }
    Ok(site_end)
}

/// Delete the veth (both ends) from inside the site's namespace; the
/// namespace itself goes when its last socket and this thread are gone.
pub fn leave_capped_namespace(site_end: &str) {
    let _ = run(&["ip", "link", "del", site_end]);
}
