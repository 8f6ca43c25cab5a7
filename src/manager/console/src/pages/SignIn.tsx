import { useState, type FormEvent } from "react";
import { api, setSession } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { useAction } from "../components/useAction";

export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [name, setName] = useState("root");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      const r = await api<{ token: string }>("POST", "/api/v1/users/signin", { name, password });
      setSession(r.token);
      onSignedIn();
    });
  };
  return (
    <main className="signin">
      <h1>Damselfly</h1>
      <form onSubmit={submit}>
        <label>
          User <input name="name" value={name} onChange={(e) => setName(e.target.value)} autoComplete="username" required />
        </label>
        <label>
          Password{" "}
          <input name="password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="current-password" required />
        </label>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <ErrorNote error={error} />
      </form>
    </main>
  );
}
