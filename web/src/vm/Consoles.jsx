// The VM's consoles in the browser, both relayed by corrald over a websocket (no libvirt or
// QEMU port is reached directly): the graphical one with noVNC (a ticket's password first) and
// the serial one with xterm (bytes both ways). Both libraries load only when opened.
import { useEffect, useRef, useState } from 'preact/hooks';
import { post, seg, wsProtocols, wsUrl } from '../api.js';
import { vmStatus } from '../format.js';
import { ErrorBox } from '../ui.jsx';

export function Consoles({ vm }) {
  const [which, setWhich] = useState(null);
  const running = vmStatus(vm) !== 'down';
  return (
    <div data-testid="vm-consoles">
      {!running && <p class="muted">The VM is down: it has no console.</p>}
      <div class="actions">
        <button type="button" disabled={!running} onClick={() => setWhich('vnc')} data-testid="open-vnc">
          Graphical console
        </button>
        <button type="button" disabled={!running} onClick={() => setWhich('serial')} data-testid="open-serial">
          Serial console
        </button>
        {which && (
          <button type="button" onClick={() => setWhich(null)} data-testid="close-console">
            Close
          </button>
        )}
      </div>
      {which === 'vnc' && <VncConsole key={vm.name} name={vm.name} />}
      {which === 'serial' && <SerialConsole key={vm.name} name={vm.name} />}
    </div>
  );
}

function VncConsole({ name }) {
  const screen = useRef(null);
  const [state, setState] = useState('asking for a ticket');
  const [error, setError] = useState(null);
  useEffect(() => {
    let rfb = null;
    let gone = false;
    (async () => {
      try {
        const ticket = await post(`/vms/${seg(name)}/vnc`, {});
        const { default: RFB } = await import('@novnc/novnc');
        if (gone) return;
        setState('connecting');
        rfb = new RFB(screen.current, wsUrl(`/vms/${seg(name)}/vnc/websocket`), {
          wsProtocols: wsProtocols(),
          credentials: { password: ticket.password },
        });
        rfb.scaleViewport = true;
        rfb.addEventListener('connect', () => setState('connected'));
        rfb.addEventListener('disconnect', (e) => setState(e.detail.clean ? 'disconnected' : 'connection lost'));
        rfb.addEventListener('credentialsrequired', () => rfb.sendCredentials({ password: ticket.password }));
        rfb.addEventListener('securityfailure', (e) => setError({ message: `VNC refused: ${e.detail.reason || e.detail.status}` }));
      } catch (e) {
        setError(e);
        setState('failed');
      }
    })();
    return () => {
      gone = true;
      if (rfb) rfb.disconnect();
    };
  }, [name]);
  return (
    <div class="console">
      <p class="muted" data-testid="vnc-state">
        Graphical console: {state}
      </p>
      <ErrorBox error={error} testid="vnc-error" />
      <div class="vnc-screen" ref={screen} data-testid="vnc-screen" />
    </div>
  );
}

function SerialConsole({ name }) {
  const box = useRef(null);
  const [state, setState] = useState('connecting');
  const [error, setError] = useState(null);
  useEffect(() => {
    let ws = null;
    let term = null;
    let gone = false;
    (async () => {
      const [{ Terminal }] = await Promise.all([import('@xterm/xterm'), import('@xterm/xterm/css/xterm.css')]);
      if (gone) return;
      term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
      term.open(box.current);
      term.focus();
      ws = new WebSocket(wsUrl(`/vms/${seg(name)}/console/websocket`), wsProtocols());
      ws.binaryType = 'arraybuffer';
      let opened = false;
      ws.onopen = () => {
        opened = true;
        setState('connected (keys go to the guest)');
      };
      ws.onmessage = (ev) => {
        // Text frames are the relay's own words: {"host": NAME} first, {"error": MESSAGE} at
        // the end; the guest's output comes in binary frames.
        if (typeof ev.data === 'string') {
          let said = {};
          try {
            said = JSON.parse(ev.data);
          } catch {
            return;
          }
          if (said.host) setState(`connected through ${said.host} (keys go to the guest)`);
          if (said.error) setError({ message: said.error });
          return;
        }
        const data = new Uint8Array(ev.data);
        term.write(data);
        if (box.current) box.current.dataset.bytes = String(Number(box.current.dataset.bytes || 0) + data.length);
      };
      // A refusal before the upgrade (no permission, no console) reaches a browser only as a
      // connection that never opened, without the server's words.
      ws.onclose = (ev) =>
        setState(
          opened
            ? `closed${ev.reason ? `: ${ev.reason}` : ''}`
            : 'refused (the VM must run, on a host with a serial console, and you need vm.console on it)',
        );
      const enc = new TextEncoder();
      term.onData((d) => ws.readyState === WebSocket.OPEN && ws.send(enc.encode(d)));
      term.onBinary((d) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff));
      });
    })().catch((e) => setError(e));
    return () => {
      gone = true;
      if (ws) ws.close(1000);
      if (term) term.dispose();
    };
  }, [name]);
  return (
    <div class="console">
      <p class="muted" data-testid="serial-state">
        Serial console: {state}
      </p>
      <ErrorBox error={error} testid="serial-error" />
      <div class="serial-screen" ref={box} data-testid="serial-screen" data-bytes="0" />
    </div>
  );
}
