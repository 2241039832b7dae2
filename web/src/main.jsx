// The web console's shell: the session, the navigation bar and the page for the route.
// Every page reads the API itself; nothing here caches cluster state.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { currentUser, logout, setUnauthorizedHandler, token } from './api.js';
import { href, match, navigate, usePath } from './router.js';
import { Login } from './pages/Login.jsx';
import { Dashboard } from './pages/Dashboard.jsx';
import { VmList } from './pages/VmList.jsx';
import { VmNew } from './pages/VmNew.jsx';
import { VmPage } from './vm/VmPage.jsx';
import { HostList, HostPage } from './pages/Hosts.jsx';
import { Events } from './pages/Events.jsx';
import { Users } from './pages/Users.jsx';
import { Roles } from './pages/Roles.jsx';
import { Permissions } from './pages/Permissions.jsx';

const ROUTES = [
  ['/', Dashboard],
  ['/vms', VmList],
  ['/new-vm', VmNew],
  ['/vms/:vm', VmPage],
  ['/hosts', HostList],
  ['/hosts/:host', HostPage],
  ['/events', Events],
  ['/users', Users],
  ['/roles', Roles],
  ['/permissions', Permissions],
];

const NAV = [
  ['/', 'Dashboard', 'nav-dashboard'],
  ['/vms', 'VMs', 'nav-vms'],
  ['/hosts', 'Hosts', 'nav-hosts'],
  ['/events', 'Events', 'nav-events'],
  ['/users', 'Users', 'nav-users'],
  ['/roles', 'Roles', 'nav-roles'],
  ['/permissions', 'Permissions', 'nav-permissions'],
];

function App() {
  const path = usePath();
  const [loginMessage, setLoginMessage] = useState(null);
  const [, setSession] = useState(token());

  useEffect(() => {
    setUnauthorizedHandler((message) => {
      setLoginMessage(message);
      setSession(null);
      navigate('/login');
    });
  }, []);

  if (!token() || path === '/login') {
    return (
      <Login
        message={loginMessage}
        onLogin={() => {
          setLoginMessage(null);
          setSession(token());
          navigate('/');
        }}
      />
    );
  }

  let page = <p data-testid="not-found">No such page: {path}</p>;
  for (const [pattern, Page] of ROUTES) {
    const params = match(pattern, path);
    if (params) {
      page = <Page key={path} {...params} />;
      break;
    }
  }
  const section = '/' + (path.split('/')[1] || '');
  const here = NAV.find(([to]) => to === section);
  document.title = here && section !== '/' ? `${here[1]} · Corral` : 'Corral';

  return (
    <div class="shell">
      <header>
        <a class="brand" href={href('/')}>
          Corral
        </a>
        <nav>
          {NAV.map(([to, text, testid]) => (
            <a key={to} href={href(to)} class={section === to ? 'active' : ''} data-testid={testid}>
              {text}
            </a>
          ))}
        </nav>
        <span class="who" data-testid="whoami">
          {currentUser()}
        </span>
        <button
          type="button"
          data-testid="logout"
          onClick={async () => {
            try {
              await logout();
            } catch {
              // The session is forgotten here whatever the server said.
            }
            setSession(null);
            navigate('/login');
          }}
        >
          Log out
        </button>
      </header>
      <main>{page}</main>
    </div>
  );
}

render(<App />, document.getElementById('app'));
