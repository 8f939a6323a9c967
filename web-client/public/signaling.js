// The websocket side of docs/signaling-protocol.md.
export const PROTOCOL_VERSION = 1;

export class Signaling extends EventTarget {
  constructor(url) {
    super();
    this.ws = new WebSocket(url);
    this.ws.addEventListener('open', () => this.dispatchEvent(new Event('open')));
    this.ws.addEventListener('close', (e) => this.dispatchEvent(new CustomEvent('close', { detail: e })));
    this.ws.addEventListener('message', (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg.type === 'ping') { this.send({ type: 'pong' }); return; }
      this.dispatchEvent(new CustomEvent('message', { detail: msg }));
    });
  }

  send(msg) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  close() {
    this.ws.close();
  }
}

export function signalingUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}
