import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { api, session, setSession, type User } from "./api";
import { Access } from "./pages/Access";
import { Clusters } from "./pages/Clusters";
import { Jobs } from "./pages/Jobs";
import { Layers } from "./pages/Layers";
import { SignIn } from "./pages/SignIn";
import { Tasks } from "./pages/Tasks";
import "./styles.css";

const PAGES = { clusters: "Clusters", tasks: "Tasks", layers: "Layers", jobs: "Jobs", access: "Users and access" } as const;
type Page = keyof typeof PAGES;

const can = (u: User, perm: string) => (u.permissions ?? []).includes("*") || (u.permissions ?? []).includes(perm);

function App() {
  const [user, setUser] = useState<User | null>(null);
  const [checked, setChecked] = useState(false);
  const [page, setPage] = useState<Page>(() => ((location.hash.slice(1) as Page) in PAGES ? (location.hash.slice(1) as Page) : "clusters"));
  const loadMe = () => {
    if (!session()) return setChecked(true);
    api<User>("GET", "/api/v1/users/me").then(
      (u) => (setUser(u), setChecked(true)),
      () => (setUser(null), setChecked(true)),
    );
  };
  useEffect(() => {
    loadMe();
    const out = () => setUser(null);
    window.addEventListener("damselfly:signed-out", out);
    const hash = () => setPage((location.hash.slice(1) as Page) in PAGES ? (location.hash.slice(1) as Page) : "clusters");
    window.addEventListener("hashchange", hash);
    return () => {
      window.removeEventListener("damselfly:signed-out", out);
      window.removeEventListener("hashchange", hash);
    };
  }, []);
  if (!checked) return null;
  if (!user) return <SignIn onSignedIn={loadMe} />;
  const signOut = async () => {
    await api("POST", "/api/v1/users/signout").catch(() => undefined);
    setSession(null);
    setUser(null);
  };
  return (
    <>
      <header>
        <b>Damselfly</b>
        <nav>
          {(Object.keys(PAGES) as Page[]).map((p) => (
            <a key={p} href={`#${p}`} className={p === page ? "active" : ""}>
              {PAGES[p]}
            </a>
          ))}
        </nav>
        <span className="who">
          {user.name} ({user.role}) <button onClick={signOut}>Sign out</button>
        </span>
      </header>
      <main>
        {page === "clusters" && <Clusters canWrite={can(user, "cluster:write")} />}
        {page === "tasks" && <Tasks canWrite={can(user, "job:write")} />}
        {page === "layers" && <Layers />}
        {page === "jobs" && <Jobs canWrite={can(user, "job:write")} />}
        {page === "access" && <Access canManageUsers={can(user, "user:write")} />}
      </main>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
