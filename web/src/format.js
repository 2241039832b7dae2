// Words for values: the API's enums come by proto name (VM_STATUS_UP), shown as the CLI shows
// them ("up"); the string field beside each enum is the fallback for an unspecified enum.

/** "VM_STATUS_POWERING_UP" with prefix "VM_STATUS_" -> "powering_up". */
export function word(enumValue, prefix, fallback = '') {
  if (enumValue && enumValue !== `${prefix}UNSPECIFIED` && String(enumValue).startsWith(prefix)) {
    return String(enumValue).slice(prefix.length).toLowerCase();
  }
  return fallback || '';
}

export const vmStatus = (vm) => word(vm.status_enum, 'VM_STATUS_', vm.status) || 'unknown';
export const hostState = (h) => word(h.state_enum, 'HOST_STATE_', h.state) || 'unknown';
export const eventKind = (e) => word(e.kind_enum, 'EVENT_KIND_', e.kind);

export const VM_STATUSES = [
  'up',
  'down',
  'powering_up',
  'powering_down',
  'reboot_in_progress',
  'migrating',
  'paused',
  'suspended',
  'not_responding',
  'unknown',
];

export const HOST_STATES = ['up', 'joining', 'non_responsive', 'down', 'preparing_for_maintenance', 'maintenance'];

/** A label for any status word: "powering_up" -> "powering up". */
export const label = (w) => String(w || '').replace(/_/g, ' ');

export function mib(n) {
  const v = Number(n || 0);
  if (v >= 1024 * 1024) return `${(v / 1024 / 1024).toFixed(1)} TiB`;
  if (v >= 1024) return `${+(v / 1024).toFixed(1)} GiB`;
  return `${v} MiB`;
}

export function bytes(n) {
  const v = Number(n || 0);
  if (v >= 1 << 30) return `${(v / (1 << 30)).toFixed(1)} GiB`;
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)} MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(1)} KiB`;
  return `${v} B`;
}

export function time(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  return d.toLocaleString(undefined, { hour12: false });
}

/** "3 min ago", for lists that change. */
export function ago(ms) {
  if (!ms) return '';
  const s = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/**
 * An event's severity, for the dashboard's alerts and the events page: the Event message has no
 * level field, so its kind and words decide.
 */
export function eventLevel(e) {
  const kind = eventKind(e);
  const text = (e.message || '').toLowerCase();
  if (kind === 'login_failed' || /failed|error|could not|cannot|fenc|lost/.test(text)) return 'error';
  if (kind === 'vm_high_availability') return 'warning';
  if (kind === 'host_state_changed' && /non.?responsive|\bdown\b/.test(text)) return 'warning';
  if (/not responding|paused|no room|killed|retr(y|ies)|refused/.test(text)) return 'warning';
  return 'info';
}
