// Hash routing (#/vms/web1): works behind any server, and corrald answers index.html for
// unknown paths anyway. A route is a pattern with :params.
import { useEffect, useState } from 'preact/hooks';

export function currentPath() {
  const h = location.hash.replace(/^#/, '');
  return h.startsWith('/') ? h : '/';
}

export function navigate(path) {
  if (currentPath() !== path) location.hash = path;
}

export function usePath() {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const on = () => setPath(currentPath());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return path;
}

/** Matches "/vms/:vm" against "/vms/web1" -> { vm: "web1" }, or null. */
export function match(pattern, path) {
  const [p] = path.split('?');
  const a = pattern.split('/').filter(Boolean);
  const b = p.split('/').filter(Boolean);
  if (a.length !== b.length) return null;
  const params = {};
  for (let i = 0; i < a.length; i++) {
    if (a[i].startsWith(':')) params[a[i].slice(1)] = decodeURIComponent(b[i]);
    else if (a[i] !== b[i]) return null;
  }
  return params;
}

export const href = (path) => `#${path}`;
