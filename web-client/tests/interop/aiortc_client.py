"""An aiortc client of the documented protocol (docs/signaling-protocol.md).

It joins with an invite link, publishes a drawn VP8 camera and an Opus tone,
subscribes to every other track in the room, and counts what it decodes. It
prints one JSON object a line on stdout: `joined`, then `stats` every 500 ms.
It reads commands from stdin, one a line: `screen` publishes a second video
m-line as a screen share (a renegotiation), `leave` leaves and exits.
Run by tests/interop_aiortc.test.js; ends by itself after --max-seconds.
"""

import argparse
import asyncio
import fractions
import json
import math
import ssl
import sys
import time
from urllib.parse import parse_qs, urlparse

import av
import websockets
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack


def emit(**fields):
    print(json.dumps(fields), flush=True)


class Pattern(VideoStreamTrack):
    """A gradient that moves every frame (30 frames, cycled)."""

    def __init__(self, width, height, step):
        super().__init__()
        base = bytes(range(256)) * (width // 256 + 3)
        self.frames = []
        for n in range(30):
            y_plane = b"".join(base[(y + n * step) % 256:(y + n * step) % 256 + width] for y in range(height))
            self.frames.append(y_plane)
        self.chroma = bytes([128]) * (width // 2 * height // 2)
        self.width, self.height, self.n = width, height, 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        frame.planes[0].update(self.frames[self.n % len(self.frames)])
        frame.planes[1].update(self.chroma)
        frame.planes[2].update(self.chroma)
        frame.pts, frame.time_base = pts, time_base
        self.n += 1
        return frame


class Tone(MediaStreamTrack):
    """A 480 Hz tone (a 100-sample period at 48 kHz), 20 ms a frame."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        period = [int(8000 * math.sin(2 * math.pi * i / 100)) for i in range(100)]
        self.pcm = b"".join(v.to_bytes(2, "little", signed=True) for v in period * 11)
        self.start = None
        self.ts = 0

    async def recv(self):
        if self.start is None:
            self.start = time.time()
        else:
            self.ts += 960
            await asyncio.sleep(max(0, self.start + self.ts / 48000 - time.time()))
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        offset = (self.ts % 100) * 2
        frame.planes[0].update(self.pcm[offset:offset + 1920])
        frame.pts, frame.sample_rate, frame.time_base = self.ts, 48000, fractions.Fraction(1, 48000)
        return frame


class Client:
    def __init__(self, invite, name):
        url = urlparse(invite)
        query = parse_qs(url.query)
        self.room, self.token = query["room"][0], query["token"][0]
        self.ws_url = f"wss://{url.netloc}/ws"
        self.name = name
        self.pc = RTCPeerConnection()
        self.local = {}    # source -> transceiver
        self.track_ids = {}  # source -> track id
        self.remote = {}   # track id -> {info, transceiver, frames, samples, energy, height}
        self.by_mid = {}   # mid -> track id
        self.errors = []
        self.lock = asyncio.Lock()
        self.answer = None
        self.again = False
        self.ws_open_at = None
        self.first_frame_at = None
        self.pc.on("track", self.on_track)

    def send(self, msg):
        return self.ws.send(json.dumps(msg))

    def publish(self, source, track):
        t = self.pc.addTransceiver(track, direction="sendonly")
        if track.kind == "video":
            # VP8 (and its RTX) only: the server also takes H.264, but the
            # contract under test is VP8.
            caps = RTCRtpSender.getCapabilities("video").codecs
            t.setCodecPreferences([c for c in caps if c.mimeType in ("video/VP8", "video/rtx")])
        self.local[source] = t

    def subscribe(self, info):
        if info["track_id"] in self.remote:
            return
        t = self.pc.addTransceiver(info["kind"], direction="recvonly")
        self.remote[info["track_id"]] = {"info": info, "transceiver": t, "frames": 0, "samples": 0, "energy": 0, "height": 0}

    def unsubscribe(self, track_id):
        r = self.remote.pop(track_id, None)
        if r:
            r["transceiver"].direction = "inactive"

    def on_track(self, track):
        for tid, r in self.remote.items():
            if r["transceiver"].receiver.track is track:
                asyncio.ensure_future(self.consume(tid, r, track))
                return

    async def consume(self, tid, r, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                r["frames"] += 1
                r["height"] = frame.height
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
            else:
                r["samples"] += frame.samples
                data = bytes(frame.planes[0])
                r["energy"] += sum(abs(int.from_bytes(data[i:i + 2], "little", signed=True)) for i in range(0, len(data), 64))

    async def negotiate(self):
        if self.lock.locked():
            self.again = True
            return
        async with self.lock:
            while True:
                self.again = False
                offer = await self.pc.createOffer()
                await self.pc.setLocalDescription(offer)
                publish = [{"mid": t.mid, "source": s} for s, t in self.local.items() if t.mid is not None]
                subscribe = [{"mid": r["transceiver"].mid, "track_id": tid} for tid, r in self.remote.items()
                             if r["transceiver"].mid is not None and r["transceiver"].direction == "recvonly"]
                self.answer = asyncio.get_running_loop().create_future()
                await self.send({"type": "offer", "sdp": self.pc.localDescription.sdp, "publish": publish, "subscribe": subscribe})
                msg = await asyncio.wait_for(self.answer, 10)
                if msg["type"] == "answer":
                    for p in msg.get("published", []):
                        for s, t in self.local.items():
                            if t.mid == p["mid"]:
                                self.track_ids[s] = p["track_id"]
                    await self.pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
                else:
                    self.errors.append(msg)
                    return
                if not self.again:
                    return

    async def on_message(self, msg):
        kind = msg["type"]
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind in ("answer", "error") and self.answer is not None and not self.answer.done() \
                and (kind == "answer" or msg.get("code") in ("invalid_offer", "server_busy", "forbidden")):
            self.answer.set_result(msg)
        elif kind == "error":
            self.errors.append(msg)
        elif kind == "participant_joined":
            for t in msg["participant"]["tracks"]:
                self.subscribe(dict(t, participant_id=msg["participant"]["participant_id"]))
            asyncio.ensure_future(self.negotiate())
        elif kind == "track_published":
            self.subscribe(dict(msg["track"], participant_id=msg["participant_id"]))
            asyncio.ensure_future(self.negotiate())
        elif kind == "track_unpublished":
            self.unsubscribe(msg["track_id"])
            asyncio.ensure_future(self.negotiate())
        elif kind == "participant_left":
            for tid in [t for t, r in self.remote.items() if r["info"].get("participant_id") == msg["participant_id"]]:
                self.unsubscribe(tid)
            asyncio.ensure_future(self.negotiate())

    async def stats(self):
        inbound = []
        outbound = []
        for s in (await self.pc.getStats()).values():
            if s.type == "inbound-rtp":
                inbound.append({"kind": s.kind, "packetsReceived": s.packetsReceived, "packetsLost": s.packetsLost})
            elif s.type == "outbound-rtp":
                outbound.append({"kind": s.kind, "ssrc": s.ssrc, "packetsSent": s.packetsSent})
        received = [{"track_id": tid, "kind": r["info"]["kind"], "source": r["info"]["source"], "frames": r["frames"],
                     "samples": r["samples"], "energy": r["energy"], "height": r["height"]} for tid, r in self.remote.items()]
        first = None if self.first_frame_at is None else round((self.first_frame_at - self.ws_open_at) * 1000)
        return {"received": received, "inbound": inbound, "outbound": outbound, "published": self.track_ids,
                "join_to_first_frame_ms": first, "errors": self.errors, "state": self.pc.connectionState}


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--invite", required=True)
    ap.add_argument("--name", default="aiortc")
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    if args.debug:
        import logging
        logging.basicConfig(level=logging.DEBUG)
    c = Client(args.invite, args.name)
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    async with websockets.connect(c.ws_url, ssl=tls) as ws:
        c.ws = ws
        c.ws_open_at = time.monotonic()
        await c.send({"type": "join", "v": 1, "room": c.room, "name": c.name, "token": c.token})
        joined = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if joined["type"] != "joined":
            emit(event="refused", message=joined)
            return
        emit(event="joined", participant_id=joined["participant_id"], simulcast=joined.get("simulcast"))
        for p in joined["participants"]:
            for t in p["tracks"]:
                c.subscribe(dict(t, participant_id=p["participant_id"]))
        c.publish("microphone", Tone())
        c.publish("camera", Pattern(640, 360, 4))

        async def reader():
            async for raw in ws:
                await c.on_message(json.loads(raw))

        async def commands():
            loop = asyncio.get_running_loop()
            reader_ = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader_), sys.stdin)
            while line := (await reader_.readline()).decode().strip():
                if line == "screen":
                    c.publish("screen", Pattern(640, 360, 1))
                    await c.negotiate()
                elif line == "leave":
                    return

        async def report():
            while True:
                emit(event="stats", **(await c.stats()))
                await asyncio.sleep(0.5)

        tasks = [asyncio.ensure_future(x) for x in (reader(), commands(), report())]
        await c.negotiate()
        await asyncio.wait(tasks, timeout=args.max_seconds, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await c.send({"type": "leave"})
    await c.pc.close()
    emit(event="left")


if __name__ == "__main__":
    asyncio.run(main())
