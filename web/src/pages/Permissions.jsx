// Every permission the user may see, with add and remove.
import { PermissionPanel } from '../permissions.jsx';

export function Permissions() {
  return (
    <div data-testid="permissions-page">
      <PermissionPanel />
    </div>
  );
}
