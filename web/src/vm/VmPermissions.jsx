// Who may do what on this VM: the permissions given on vm:NAME.
import { PermissionPanel } from '../permissions.jsx';

export function VmPermissions({ vm }) {
  return <PermissionPanel on={`vm:${vm.name}`} />;
}
