#!/usr/bin/env python3
"""Tessera's benchmark driver, started by `bench/run` (which builds the binaries and makes
the fresh database). It starts `tessera serve`, provisions it with the CLI, fills token
pools, drives every workload with wrk (one thread, closed loop) or, for the whole code flow,
with `flows` of bench/hello (one thread, one task per concurrent browser), measures the
ceilings, and writes the results into a JSON file (one section per store; the other store's
section is kept).

Only the Python standard library is used.
"""

import argparse
import base64
import hashlib
import html
import http.client
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "lua")
REDIRECT_URI = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery staple"
USERNAME = "bench"
ACCESS_POOL = 10_000


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# /proc


def proc_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks():
    """(busy, all) clock ticks of every CPU since boot, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def wait_quiet(limit_s=30.0, share=0.10, window_s=0.5):
    """Waits until the machine has been at most `share` busy over a `window_s` window (the
    previous run's aftermath over: Postgres's autovacuum and checkpoints, SQLite's), at most
    `limit_s`. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        b0, a0 = machine_ticks()
        time.sleep(window_s)
        b1, a1 = machine_ticks()
        if a1 > a0 and (b1 - b0) / (a1 - a0) <= share:
            break
    return round(time.monotonic() - t0, 1)


def proc_status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return int(s[s.rindex(")") + 2 :].split()[1])
    except OSError:
        return None


AUX = ("walwriter", "checkpointer", "background writer", "autovacuum launcher")


class PgCpu:
    """CPU time of the Postgres processes that serve the bench database: its backends
    (found by the database name in their process title) plus the shared auxiliary
    processes (WAL writer, checkpointer, background writer). Also, for reference, every
    child of the postmaster. Sampled during a run, so that backends which exit before the
    end still count up to their last sample."""

    def __init__(self, db):
        self.db = db
        self.postmaster = None
        for name in os.listdir("/proc"):
            if name.isdigit() and comm(name) == "postgres" and f" {db} " in cmdline(name):
                self.postmaster = ppid(name)
                break

    def children(self):
        if self.postmaster is None:
            return []
        try:
            with open(f"/proc/{self.postmaster}/task/{self.postmaster}/children") as f:
                return f.read().split()
        except OSError:
            return [p for p in os.listdir("/proc") if p.isdigit() and ppid(p) == self.postmaster]

    def scan(self):
        ours, every = {}, {}
        for pid in self.children():
            ticks = proc_ticks(pid)
            if ticks is None:
                continue
            every[pid] = ticks
            title = cmdline(pid)
            if f" {self.db} " in title or any(title.rstrip().endswith(a) for a in AUX):
                ours[pid] = ticks
        return ours, every

    def start(self):
        self.base_ours, self.base_all = self.scan()
        self.last_ours, self.last_all = dict(self.base_ours), dict(self.base_all)

    def sample(self):
        ours, every = self.scan()
        self.last_ours.update(ours)
        self.last_all.update(every)

    def result_ms(self):
        def total(last, base):
            return sum(t - base.get(p, 0) for p, t in last.items()) * 1000.0 / CLK_TCK

        return total(self.last_ours, self.base_ours), total(self.last_all, self.base_all)


def reset_peak_rss(pid):
    """Resets the process's VmHWM (`clear_refs` 5, Linux 4.0 and later), so that reading it
    after a run gives that run's peak exactly, with nothing sampled meanwhile. Answers the
    VmHWM before the reset, or None when the reset is not allowed here."""
    before = proc_status_kib(pid, "VmHWM")
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return before


class Sampler(threading.Thread):
    """The server's peak RSS over a run, and Postgres CPU sampled every second (a backend
    that exits during the run still counts up to its last sample). The peak is VmHWM after
    a reset at the start where the kernel allows it; otherwise VmRSS sampled every 50 ms.
    Scanning /proc costs the machine's CPU too: at 20 scans a second the sampler took
    about 0.8 % of the cores from the workload it measured (perf, code flow)."""

    def __init__(self, pid, pg, peaks):
        super().__init__(daemon=True)
        self.pid, self.pg = pid, pg
        self.peak_kib = 0
        # The peaks of the runs before, which the reset forgets: the lifetime figure.
        before = reset_peak_rss(pid) if pid else None
        if before is not None:
            peaks.setdefault(pid, []).append(before)
        self.hwm = before is not None
        self.stop_event = threading.Event()

    def run(self):
        n = 0
        while not self.stop_event.is_set():
            if not self.hwm:
                rss = proc_status_kib(self.pid, "VmRSS") if self.pid else None
                if rss:
                    self.peak_kib = max(self.peak_kib, rss)
            if self.pg and (self.hwm or n % 20 == 0):
                self.pg.sample()
            n += 1
            self.stop_event.wait(1.0 if self.hwm else 0.05)

    def stop(self):
        self.stop_event.set()
        self.join()
        key = "VmHWM" if self.hwm else "VmRSS"
        rss = proc_status_kib(self.pid, key) if self.pid else None
        if rss:
            self.peak_kib = max(self.peak_kib, rss)


# ---------------------------------------------------------------------------------------
# Postgres statistics


def psql(url, sql):
    out = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout.strip()


class PgStats:
    """Per-database counters from pg_stat_database (read from the admin database, so the
    reading adds nothing), table accesses (seq_scan + idx_scan) from pg_stat_user_tables and, when the extension is
    loaded, statement calls from pg_stat_statements (read from the bench database: that
    reading is one statement and one commit, subtracted)."""

    def __init__(self, admin_url, db_url, db):
        self.admin_url, self.db_url, self.db = admin_url, db_url, db
        self.statements = False
        self.statements_why = ""
        try:
            psql(db_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            psql(db_url, "SELECT count(*) FROM pg_stat_statements")
            self.statements = True
        except RuntimeError as e:
            self.statements_why = str(e).splitlines()[0] if str(e) else "unavailable"

    def read(self):
        row = psql(
            self.admin_url,
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
            "(SELECT count(*) FROM pg_stat_activity WHERE datname = d.datname "
            "AND state LIKE 'idle in transaction%') "
            f"FROM pg_stat_database d WHERE datname = '{self.db}'",
        ).split("|")
        stmt = "0, 0, 0"
        if self.statements:
            # Calls, the time Postgres spent executing and planning them (wall time: waits
            # for locks and for a core count too), and the WAL records they wrote, which do
            # not depend on the host at all.
            ours = (
                "FROM pg_stat_statements WHERE dbid = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            stmt = (
                f"(SELECT coalesce(sum(calls), 0) {ours}), "
                f"(SELECT coalesce(sum(total_exec_time + total_plan_time), 0) {ours}), "
                f"(SELECT coalesce(sum(wal_records), 0) {ours})"
            )
        scans = psql(
            self.db_url,
            "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0), "
            f"{stmt} FROM pg_stat_user_tables",
        ).split("|")
        commit, rollback, ins, upd, dele, idle_in_xact = (int(x) for x in row)
        return {
            "idle_in_transaction": idle_in_xact,
            "commits": commit,
            "rollbacks": rollback,
            "rows_written": ins + upd + dele,
            "scans": int(scans[0]),
            "statements": int(float(scans[1])),
            "statement_ms": round(float(scans[2]), 3),
            "wal_records": int(float(scans[3])),
        }

    def delta(self, before, after):
        d = {k: after[k] - before[k] for k in before}
        # Not a counter: the bench database's connections still inside a transaction when
        # the statistics are read, seconds after the run ended (none, if all is well).
        d["idle_in_transaction"] = after["idle_in_transaction"]
        d["commits"] -= 1  # the bench-database reading of `before`
        if self.statements:
            d["statements"] -= 1
            d["statement_ms"] = round(d["statement_ms"], 3)
        else:
            d["statements"] = d["statement_ms"] = d["wal_records"] = None
        return d


# ---------------------------------------------------------------------------------------
# HTTP


def basic(client_id, secret):
    raw = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


class Browser:
    """One browser: a keep-alive connection and a cookie jar."""

    def __init__(self, port):
        self.port = port
        self.conn = None
        self.jar = {}

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        for cookie in resp.headers.get_all("Set-Cookie") or []:
            pair = cookie.split(";", 1)[0]
            name, _, value = pair.partition("=")
            if "max-age=0" in cookie.lower().replace(" ", ""):
                self.jar.pop(name.strip(), None)
            else:
                self.jar[name.strip()] = value.strip()
        return resp, data

    def close(self):
        if self.conn is not None:
            self.conn.close()


class FlowError(Exception):
    def __init__(self, status, where):
        super().__init__(f"{where}: HTTP {status}")
        self.status, self.where = status, where


def hidden(page, name):
    m = re.search(rb'name="' + name.encode() + rb'" value="([^"]*)"', page)
    if not m:
        return None
    return html.unescape(m.group(1).decode())


def user(i):
    return f"{USERNAME}{i}"


def code_flow(browser, client_id, secret, prompt_consent=True):
    """authorize -> (login form) -> (consent form) -> code -> token; the token answer."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid offline_access",
        "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    if prompt_consent:
        params["prompt"] = "consent"
    path = "/authorize?" + urllib.parse.urlencode(params)
    method, body = "GET", None
    code = None
    for _ in range(8):
        resp, data = browser.request(method, path, body)
        if resp.status in (302, 303):
            location = resp.headers.get("Location", "")
            if location.startswith(REDIRECT_URI):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
                if "code" not in query:
                    raise FlowError(resp.status, "redirect without code")
                code = query["code"][0]
                break
            path, method, body = location, "GET", None
            continue
        if resp.status != 200:
            raise FlowError(resp.status, path.split("?")[0])
        csrf = hidden(data, "csrf_token")
        pending = hidden(data, "authorize_query")
        if csrf is None or pending is None:
            raise FlowError(resp.status, "page without form")
        if b'name="password"' in data:
            path = "/login"
            form = {"username": user(0), "password": PASSWORD}
        else:
            path = "/consent"
            form = {"decision": "approve"}
        form.update(csrf_token=csrf, authorize_query=pending)
        method, body = "POST", urllib.parse.urlencode(form)
    if code is None:
        raise FlowError(0, "too many steps")
    resp, data = browser.request(
        "POST",
        "/token",
        urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            }
        ),
        {"Authorization": basic(client_id, secret)},
    )
    if resp.status != 200:
        raise FlowError(resp.status, "/token")
    return json.loads(data)


def parallel(n_threads, fn):
    """Runs fn(i) on n_threads threads; the results in order."""
    out = [None] * n_threads

    def run(i):
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


# ---------------------------------------------------------------------------------------
# The bench


def run_child(cmd, **kwargs):
    """subprocess.run(cmd), and the CPU time (user + system, ms) the child and whatever it
    waited for took: the load generator's own cost, which the server does not get."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, **kwargs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu_s * 1000.0


class Bench:
    def __init__(self, args):
        self.a = args
        self.port = args.port
        self.base = f"127.0.0.1:{self.port}"
        self.tmp = args.tmp
        self.env = dict(os.environ)
        for key in list(self.env):
            if key.startswith("TESSERA_") or key == "DATABASE_URL":
                del self.env[key]
        self.admin_port = free_port()
        self.env.update(
            TESSERA_BIND=self.base,
            TESSERA_ADMIN_BIND=f"127.0.0.1:{self.admin_port}",
            TESSERA_ISSUER=f"http://{self.base}",
            TESSERA_DATA_DIR=os.path.join(self.tmp, "data"),
            # BENCH_LOG_FILTER=sqlx::query=debug lists every statement (counting them on SQLite).
            TESSERA_LOG_FILTER=os.environ.get("BENCH_LOG_FILTER", "warn"),
            TESSERA_RATE_LIMIT_CLIENT_PER_SEC="1000000",
            TESSERA_RATE_LIMIT_ADDRESS_PER_SEC="1000000",
            # Every browser comes from 127.0.0.1, and the sign-in throttle counts an attempt
            # as failed until its password checks out: with the default of 20, more than 20
            # logins at once from one address are refused with 429. Each browser signs in as
            # its own user, so the per-username threshold keeps its default.
            TESSERA_LOGIN_FAILURES_PER_ADDRESS_BEFORE_DELAY="1000000",
        )
        # BENCH_SERVER_ENV="TESSERA_A=1 TESSERA_B=2": settings for trials (say a hashing
        # concurrency), given to the server after the bench's own.
        for pair in os.environ.get("BENCH_SERVER_ENV", "").split():
            key, _, value = pair.partition("=")
            self.env[key] = value
        if args.store == "postgres":
            self.env["DATABASE_URL"] = args.db_url
        self.server = None
        self.peaks = {}  # per process, its VmHWM before each reset (see Sampler)
        self.secrets = {}
        self.result = {"store": args.store, "notes": []}
        self.pg = None
        self.stats = None

    # -- processes --------------------------------------------------------------------

    def cli(self, *argv, stdin=None):
        out = subprocess.run(
            [self.a.tessera, *argv],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"tessera {' '.join(argv)}: {out.stderr.strip()}")
        return out.stdout

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def start_server(self):
        logf = open(os.path.join(self.tmp, "tessera.log"), "ab")
        t0 = time.monotonic()
        self.server = subprocess.Popen(
            [self.a.tessera, "serve"], env=self.env, stdout=logf, stderr=subprocess.STDOUT
        )
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"tessera serve exited; see {self.tmp}/tessera.log")
            try:
                status, _ = self.get("/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > 60:
                raise RuntimeError("tessera serve not ready within 60 s")
            time.sleep(0.005)
        return (time.monotonic() - t0) * 1000.0

    def stop_server(self):
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def memory(self, pid):
        """Where the resident memory is, in MiB: the process's RSS split into anonymous
        (heap, stacks) and file-backed (the binary's code and libraries, shared and
        reclaimable), and the allocator's own figures from /metrics: bytes in live
        allocations and bytes it keeps resident."""
        out = {}
        for key, name in (("VmRSS", "rss"), ("RssAnon", "rss_anon"), ("RssFile", "rss_file")):
            kib = proc_status_kib(pid, key)
            if kib is not None:
                out[name] = round(kib / 1024.0, 1)
        # Each thread that allocated keeps a cache of freed memory (jemalloc's tcache): which
        # threads are alive says whose caches the allocator's figure below holds.
        threads = {}
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    name = re.sub(r"[-_ ]?\d+$", "", f.read().strip())
                threads[name] = threads.get(name, 0) + 1
        except OSError:
            pass
        if threads:
            out["threads"] = dict(sorted(threads.items()))
        # The file-backed part by file (the binary's code, the shared libraries, SQLite's
        # shared-memory index), in MiB, the larger ones only.
        files = {}
        try:
            with open(f"/proc/{pid}/smaps") as f:
                path = None
                for line in f:
                    head = line.split()
                    if head and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
                        path = os.path.basename(head[5]) if len(head) > 5 and head[5].startswith("/") else None
                    elif path and head and head[0] == "Rss:":
                        files[path] = files.get(path, 0) + int(head[1])
        except OSError:
            pass
        big = {k: round(v / 1024.0, 1) for k, v in sorted(files.items(), key=lambda kv: -kv[1]) if v >= 256}
        if big:
            out["rss_by_file"] = big
        samples = self.metrics()
        for metric, name in (("tessera_memory_allocated_bytes", "allocated"),
                             ("tessera_memory_allocator_resident_bytes", "allocator_resident"),
                             ("tessera_memory_allocator_thread_cache_bytes", "thread_caches")):
            if metric in samples:
                out[name] = round(samples[metric] / 1048576.0, 1)
        return out

    def metrics(self):
        """The server's /metrics (admin port) as {series: value}; empty when unreachable."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
        except OSError:
            return {}
        samples = {}
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series and not line.startswith("#"):
                try:
                    samples[series] = float(value)
                except ValueError:
                    pass
        return samples

    # -- provisioning -----------------------------------------------------------------

    def provision(self):
        def client(cid, name, *extra):
            secret = "bench-" + secrets.token_urlsafe(32)
            self.cli("client", "create", "--id", cid, "--name", name, "--secret", secret, *extra)
            self.secrets[cid] = secret

        cc = ("--grant-type", "client_credentials", "--scope", "api")
        client("bench-cc", "Bench client credentials", *cc)
        client("bench-cc-jwt", "Bench client credentials JWT", *cc, "--access-token-format", "jwt")
        client("bench-gateway", "Bench gateway", *cc, "--introspect")
        app = ("--redirect-uri", REDIRECT_URI, "--grant-type", "authorization_code",
               "refresh_token", "--scope", "openid profile email offline_access")
        # ID tokens signed as registration defaults them (RS256), and with ES256, which a
        # client chooses with `id_token_signed_response_alg` and costs a fraction of RSA.
        client("bench-code", "Bench app", *app)
        client("bench-code-es256", "Bench app (ES256 ID tokens)", *app, "--id-token-alg", "ES256")
        # One user per concurrent browser (the code flow), since concurrent sign-ins for
        # one username are throttled by design.
        for i in range(max(self.a.concurrency)):
            self.cli(
                "user", "create", "--username", user(i), "--email", f"{user(i)}@example.com",
                "--password-stdin", stdin=PASSWORD + "\n",
            )

    def access_pool(self):
        """10,000 live opaque access tokens, by client_credentials over HTTP."""
        path = os.path.join(self.tmp, "access_tokens.txt")
        auth = basic("bench-cc", self.secrets["bench-cc"])
        threads = 4
        per = ACCESS_POOL // threads

        def fill(_):
            b = Browser(self.port)
            out = []
            for _ in range(per):
                resp, data = b.request(
                    "POST", "/token", "grant_type=client_credentials", {"Authorization": auth}
                )
                if resp.status != 200:
                    raise RuntimeError(f"client_credentials for the pool: HTTP {resp.status}")
                out.append(json.loads(data)["access_token"])
            b.close()
            return out

        tokens = [t for chunk in parallel(threads, fill) for t in chunk]
        with open(path, "w") as f:
            f.write("\n".join(tokens) + "\n")
        return path

    def refresh_pools(self, client_id, levels, runs):
        """For every refresh run, its own file of unspent refresh tokens of `client_id`: one
        per wrk connection and some to spare. Made by one signed-in browser (one login,
        consent given once), each by an authorize -> code -> token round."""
        b = Browser(self.port)
        secret = self.secrets[client_id]
        code_flow(b, client_id, secret)  # signs in and consents once
        files = {}
        for c in levels:
            for r in range(runs):
                n = c + max(4, c // 4)
                tokens = [code_flow(b, client_id, secret, False)["refresh_token"] for _ in range(n)]
                path = os.path.join(self.tmp, f"refresh_{client_id}_{c}_{r}.txt")
                with open(path, "w") as f:
                    f.write("\n".join(tokens) + "\n")
                files[(c, r)] = path
        b.close()
        return files

    # -- measuring --------------------------------------------------------------------

    def measured(self, pid, fn, pg=True):
        """Runs fn() and returns its result with the server's CPU and peak RSS and, on
        Postgres, the database's CPU and counters over the run."""
        pg = pg and self.pg is not None
        stats_before = self.stats.read() if pg else None
        if pg:
            self.pg.start()
        cpu_before = proc_ticks(pid) if pid else 0
        hashing_before = self.hashing() if pid == self.server_pid() else None
        machine_before = machine_ticks()
        sampler = Sampler(pid, self.pg if pg else None, self.peaks)
        sampler.start()
        t0 = time.monotonic()
        out = fn()
        wall = time.monotonic() - t0
        sampler.stop()
        cpu_after = proc_ticks(pid) if pid else 0
        machine_after = machine_ticks()
        hashing_after = self.hashing() if hashing_before else None
        if pg:
            self.pg.sample()
        out["wall_s"] = round(wall, 3)
        busy, every = (a - b for a, b in zip(machine_after, machine_before))
        # The share of the machine's CPU time (all cores) that anything used during the run:
        # below 1, some of it went idle (waiting on the disk, or nothing runnable).
        out["machine_busy_share"] = round(busy / every, 4) if every else None
        if hashing_before and hashing_after:
            hashes = hashing_after[0] - hashing_before[0]
            out["hashes"] = hashes
            out["hash_cpu_ms"] = (hashing_after[1] - hashing_before[1]) / 1000.0
        if pid:
            out["server_cpu_ms"] = (cpu_after - cpu_before) * 1000.0 / CLK_TCK
            out["peak_rss_mib"] = round(sampler.peak_kib / 1024.0, 1)
        if pg:
            ours, every = self.pg.result_ms()
            out["pg_cpu_ms"] = ours
            out["pg_cpu_all_ms"] = every
            # An idle Postgres 15 backend reports what it counted since its last report
            # (at most once a second while busy) only after PGSTAT_IDLE_INTERVAL, 10 s:
            # wait for that, or the end of this run would be counted in the next one.
            time.sleep(self.a.stats_settle)
            out["pg"] = self.stats.delta(stats_before, self.stats.read())
        ops = out.get("ops") or 0
        if ops and pid:
            out["server_cpu_ms_per_op"] = round(out["server_cpu_ms"] / ops, 4)
        if ops and out.get("hashes"):
            # What the password hash costs per flow at the machine's speed of this run, and
            # the rate the cores could reach doing nothing but hashing at that speed: the
            # argon2id ceiling measured in the run itself (the separate ceiling varies with
            # the host's memory traffic from one minute to the next).
            out["hashes_per_op"] = round(out["hashes"] / ops, 3)
            out["hash_cpu_ms_per_op"] = round(out["hash_cpu_ms"] / ops, 4)
            per_hash = out["hash_cpu_ms"] / out["hashes"]
            if per_hash > 0:
                out["hash_bound_per_s"] = round(
                    (os.cpu_count() or 1) * 1000.0 / per_hash / out["hashes_per_op"], 1)
        if ops and out.get("driver_cpu_ms") is not None:
            out["driver_cpu_ms_per_op"] = round(out["driver_cpu_ms"] / ops, 4)
        if ops:
            if pg:
                out["pg_cpu_ms_per_op"] = round(out["pg_cpu_ms"] / ops, 4)
                out["pg_cpu_all_ms_per_op"] = round(out["pg_cpu_all_ms"] / ops, 4)
                for k, v in out["pg"].items():
                    if v is not None:
                        out[f"{k}_per_op"] = round(v / ops, 3)
        return out

    def server_pid(self):
        return self.server.pid if self.server else None

    def hashing(self):
        """(hashes, CPU microseconds) from the server's /metrics; None when not there."""
        samples = self.metrics()
        try:
            return (samples["tessera_password_hashes_total"],
                    samples["tessera_password_hash_cpu_microseconds_total"])
        except KeyError:
            return None

    def wrk(self, script, url, c, extra_env=None):
        env = dict(os.environ, BENCH_LUA_DIR=LUA, **(extra_env or {}))
        cmd = [
            "wrk", "-t1", f"-c{c}", f"-d{self.a.duration}s", "--latency", "--timeout", "10s",
            "-s", os.path.join(LUA, script), url,
        ]
        out, driver_ms = run_child(cmd, env=env, capture_output=True, text=True,
                                   timeout=self.a.duration + 60)
        line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")
        r = json.loads(line[len("BENCH_JSON "):])
        e = r["errors"]
        return {
            "ops": r["requests"],
            "per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
            "p50_ms": r["latency_us"]["p50"] / 1000.0,
            "p99_ms": r["latency_us"]["p99"] / 1000.0,
            "non_2xx": e["status"],
            "socket_errors": e["connect"] + e["read"] + e["write"] + e["timeout"],
            "bad_answers": r["bad"],
            "driver_cpu_ms": driver_ms,
        }

    def flows(self, c):
        """The whole code flow, by `flows` of bench/hello (one thread) acting as c browsers,
        each a fresh browser per flow (no session: login as the browser's own user, then
        consent with prompt=consent, then the code at /token). A 503 (the password-hash
        queue is full) counts as an error; that browser then waits 1 s before starting a new
        flow, as a browser user would; any other failure counts as an error and the next flow
        starts at once. The same figures as `wrk`, per flow."""
        env = dict(os.environ, BENCH_CLIENT_SECRET=self.secrets["bench-code"],
                   BENCH_PASSWORD=PASSWORD)
        cmd = [self.a.flows_bin, str(self.port), "bench-code", str(c), str(self.a.duration),
               USERNAME, REDIRECT_URI]
        out, driver_ms = run_child(cmd, env=env, capture_output=True, text=True,
                                   timeout=self.a.duration + 60)
        if out.returncode != 0:
            raise RuntimeError(f"flows exited with {out.returncode}: {out.stderr.strip()}")
        r = json.loads(out.stdout)
        r["driver_cpu_ms"] = driver_ms
        return r

    # -- workloads --------------------------------------------------------------------

    def workloads(self, access_file, refresh_files):
        url = f"http://{self.base}"
        gateway = basic("bench-gateway", self.secrets["bench-gateway"])
        code_auth = basic("bench-code", self.secrets["bench-code"])
        es256_auth = basic("bench-code-es256", self.secrets["bench-code-es256"])
        w = [
            ("discovery", "GET /.well-known/openid-configuration",
             lambda c, r: self.wrk("get.lua", url + "/.well-known/openid-configuration", c)),
            ("jwks", "GET /jwks", lambda c, r: self.wrk("get.lua", url + "/jwks", c)),
            ("client_credentials_opaque", "client_credentials, opaque access token",
             lambda c, r: self.wrk("client_credentials.lua", url + "/token", c,
                                   {"BENCH_AUTH": basic("bench-cc", self.secrets["bench-cc"])})),
            ("client_credentials_jwt", "client_credentials, JWT access token (RS256)",
             lambda c, r: self.wrk("client_credentials.lua", url + "/token", c,
                                   {"BENCH_AUTH": basic("bench-cc-jwt", self.secrets["bench-cc-jwt"])})),
            ("introspection_json", "introspection, random token of 10,000, JSON answer",
             lambda c, r: self.wrk("introspect.lua", url + "/introspect", c,
                                   {"BENCH_AUTH": gateway, "BENCH_TOKENS": access_file})),
            ("introspection_jwt", "introspection, random token of 10,000, RFC 9701 JWT answer",
             lambda c, r: self.wrk("introspect.lua", url + "/introspect", c,
                                   {"BENCH_AUTH": gateway, "BENCH_TOKENS": access_file,
                                    "BENCH_ACCEPT": "application/token-introspection+jwt"})),
            ("refresh", "refresh_token with rotation (openid offline_access; new RS256 ID token)",
             lambda c, r: self.wrk("refresh.lua", url + "/token", c,
                                   {"BENCH_AUTH": code_auth,
                                    "BENCH_TOKENS": refresh_files[("bench-code", c, r)]})),
            ("refresh_es256", "refresh_token with rotation (openid offline_access; new ES256 ID token)",
             lambda c, r: self.wrk("refresh.lua", url + "/token", c,
                                   {"BENCH_AUTH": es256_auth,
                                    "BENCH_TOKENS": refresh_files[("bench-code-es256", c, r)]})),
            ("code_flow", "whole code flow: authorize, login (argon2id), consent, code, token; flows",
             lambda c, r: self.flows(c)),
        ]
        return [x for x in w if x[0] in self.a.workloads]

    def one_run(self, fn, pid, pg=True, tag=""):
        res = self.measured(pid, fn, pg)
        log(f"  {tag}{res['per_s']}/s p50 {res['p50_ms']} ms "
            f"p99 {res['p99_ms']} ms errors {res['non_2xx'] + res['socket_errors']} "
            f"cpu {res.get('server_cpu_ms_per_op')} ms/op pg {res.get('pg_cpu_ms_per_op')} "
            f"ms/op (statements {res.get('statement_ms_per_op')} ms/op, "
            f"{res.get('wal_records_per_op')} WAL records/op) driver {res.get('driver_cpu_ms_per_op')} ms/op rss {res['peak_rss_mib']} MiB"
            f" busy {res.get('machine_busy_share')}"
            + (f" hashing {res['hash_cpu_ms_per_op']} ms/op, bound {res.get('hash_bound_per_s')}/s"
               if res.get("hash_cpu_ms_per_op") is not None else "")
            + (f" other servers {res['other_servers_cpu_ms']:.0f} ms"
               if res.get("other_servers_cpu_ms") is not None else "")
            + (f" postgres beside {res['postgres_cpu_ms_beside']:.0f} ms"
               if res.get("postgres_cpu_ms_beside") is not None else "")
            + (f" (waited {res['quiet_wait_s']} s for quiet)" if res.get("quiet_wait_s") else "")
            + (f" IDLE IN TRANSACTION {res['pg']['idle_in_transaction']}"
               if res.get("pg", {}).get("idle_in_transaction") else ""))
        return res

    def levels_of(self, fn, pid, pg=True):
        out = {}
        for c in self.a.concurrency:
            runs = [self.one_run(lambda: fn(c, r), pid, pg, f"c={c} run {r + 1}: ")
                    for r in range(self.a.runs)]
            out[str(c)] = {"median": summarize(runs), "runs": runs}
        return out

    def workload_run(self, name, c, r, others=()):
        """One run of one workload at one level, kept in this store's section. `others`: the
        other stores' benches, whose idle servers' CPU over the run is recorded beside it
        (what they took from the machine while this one was measured)."""
        label, fn = self.plan[name]
        pid = self.server_pid()

        # Every store's run starts on a quiet machine, whichever store ran before it.
        waited = wait_quiet() if others else None

        # A store without Postgres of its own: what Postgres (the other store's, idle) spent
        # beside it, all its processes.
        beside = None if self.pg else next((o.pg for o in others if o.pg), None)

        def pg_ticks():
            return sum(beside.scan()[1].values())

        def go():
            before = [(o, proc_ticks(o.server_pid())) for o in others]
            pg_before = pg_ticks() if beside else None
            out = fn(c, r)
            if beside:
                out["postgres_cpu_ms_beside"] = (pg_ticks() - pg_before) * 1000.0 / CLK_TCK
            if before:
                out["other_servers_cpu_ms"] = sum(
                    ((proc_ticks(o.server_pid()) or 0) - (t or 0)) * 1000.0 / CLK_TCK
                    for o, t in before)
                out["quiet_wait_s"] = waited
            return out

        res = self.one_run(go, pid, True, f"{self.a.store} c={c} run {r + 1}: ")
        w = self.result["workloads"].setdefault(name, {"label": label, "levels": {}})
        level = w["levels"].setdefault(str(c), {"runs": []})
        level["runs"].append(res)
        level["median"] = summarize(level["runs"])

    # -- ceilings ---------------------------------------------------------------------

    def hello(self):
        port = free_port()
        proc = subprocess.Popen([self.a.hello_bin, f"127.0.0.1:{port}"])
        try:
            for _ in range(400):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    conn.request("GET", "/")
                    conn.getresponse().read()
                    conn.close()
                    break
                except OSError:
                    time.sleep(0.01)
            return self.levels_of(
                lambda c, r: self.wrk("get.lua", f"http://127.0.0.1:{port}/", c), proc.pid, pg=False
            )
        finally:
            proc.terminate()
            proc.wait()

    def pgbench(self):
        u = urllib.parse.urlsplit(self.a.db_url)
        # The host as Tessera reaches it: a socket's folder is percent-encoded in the URL.
        conn = ["-h", urllib.parse.unquote(u.hostname or "127.0.0.1"), "-p", str(u.port or 5432),
                "-U", u.username or "postgres", u.path.lstrip("/")]
        psql(self.a.db_url,
             "DROP TABLE IF EXISTS bench_ceiling; "
             "CREATE TABLE bench_ceiling (id bigserial PRIMARY KEY, digest bytea NOT NULL, "
             "created_at bigint NOT NULL); "
             "INSERT INTO bench_ceiling (digest, created_at) "
             "SELECT sha256(g::text::bytea), g FROM generate_series(1, 100000) g; "
             "CREATE UNIQUE INDEX ON bench_ceiling (digest); ANALYZE bench_ceiling")
        scripts = {
            "insert": "INSERT INTO bench_ceiling (digest, created_at) "
                      "VALUES (sha256(random()::text::bytea), 1);\n",
            "select": "\\set g random(1, 100000)\n"
                      "SELECT * FROM bench_ceiling WHERE digest = sha256(:g::text::bytea);\n",
        }
        out = {}
        for name, body in scripts.items():
            path = os.path.join(self.tmp, f"pgbench_{name}.sql")
            with open(path, "w") as f:
                f.write(body)

            def run():
                p = subprocess.run(
                    ["pgbench", "-n", "-M", "prepared", "-c", "16", "-j", "1",
                     "-T", str(self.a.duration), "-f", path, *conn],
                    capture_output=True, text=True)
                tps = re.search(r"tps = ([\d.]+) \(without initial", p.stdout)
                lat = re.search(r"latency average = ([\d.]+) ms", p.stdout)
                done = re.search(r"number of transactions actually processed: (\d+)", p.stdout)
                if not tps:
                    raise RuntimeError(f"pgbench: {p.stdout}\n{p.stderr}")
                return {"per_s": float(tps.group(1)),
                        "latency_avg_ms": float(lat.group(1)) if lat else None,
                        "ops": int(done.group(1)) if done else 0}

            runs = []
            for _ in range(self.a.runs):
                res = self.measured(None, run)
                runs.append(res)
                log(f"  pgbench {name}: {res['per_s']:.0f}/s, pg {res.get('pg_cpu_ms_per_op')} ms/op")
            out[name] = {"median": summarize(runs), "runs": runs, "clients": 16}
        psql(self.a.db_url, "DROP TABLE bench_ceiling")
        return out

    # -- main -------------------------------------------------------------------------

    def prepare(self):
        """Provisions the store, starts the server, fills the token pools: ready for
        `workload_run`."""
        r = self.result
        log(f"{self.a.store}: provisioning with the CLI")
        t = time.monotonic()
        self.provision()
        r["provision_s"] = round(time.monotonic() - t, 2)
        # The first start on a new store creates the signing keys (an RSA key among them,
        # whose generation takes a random few hundred ms); every later start, the one that
        # matters for restarts and for adding instances, finds them.
        log(f"{self.a.store}: starting tessera serve (first start: creates the signing keys)")
        r["first_start_to_ready_ms"] = round(self.start_server(), 1)
        self.stop_server()
        log(f"{self.a.store}: restarting tessera serve")
        r["start_to_ready_ms"] = round(self.start_server(), 1)
        time.sleep(1.0)
        pid = self.server.pid
        r["idle_rss_mib_after_start"] = round(proc_status_kib(pid, "VmRSS") / 1024.0, 1)
        r["memory_after_start"] = self.memory(pid)
        log(f"ready in {r['start_to_ready_ms']} ms, idle RSS {r['idle_rss_mib_after_start']} MiB")
        if self.a.store == "postgres":
            self.pg = PgCpu(self.a.db_name)
            self.stats = PgStats(self.a.admin_url, self.a.db_url, self.a.db_name)
            if self.pg.postmaster is None:
                r["notes"].append("Postgres processes not found in /proc: no Postgres CPU figures.")
                self.pg = None
            if not self.stats.statements:
                r["notes"].append(
                    "SQL statements per operation not measured: pg_stat_statements is not "
                    f"loaded on this server ({self.stats.statements_why}). Commits, rows "
                    "written and table accesses (sequential and index scans) per operation come from pg_stat_database and "
                    "pg_stat_user_tables instead (add pg_stat_statements to shared_preload_libraries "
                    "and restart Postgres to get them).")
        else:
            r["notes"].append(
                "SQLite runs inside the tessera process: its CPU is in the server CPU figure, "
                "and there are no separate database CPU, commit or statement counts.")
        log(f"{self.a.store}: filling the token pools")
        t = time.monotonic()
        access_file = self.access_pool() if {"introspection_json", "introspection_jwt"} & set(self.a.workloads) else None
        refresh_files = {}
        for workload, client_id in (("refresh", "bench-code"), ("refresh_es256", "bench-code-es256")):
            if workload in self.a.workloads:
                pools = self.refresh_pools(client_id, self.a.concurrency, self.a.runs)
                refresh_files.update({(client_id, c, r): f for (c, r), f in pools.items()})
        r["pools_s"] = round(time.monotonic() - t, 2)
        if self.stats is not None:
            time.sleep(self.a.stats_settle)  # the pools' statistics, before the first run
        r["idle_rss_mib_after_pools"] = round(proc_status_kib(pid, "VmRSS") / 1024.0, 1)
        r["memory_after_pools"] = self.memory(pid)
        r["workloads"] = {}
        self.plan = {name: (label, fn) for name, label, fn in self.workloads(access_file, refresh_files)}

    def finish(self):
        """After the last workload: idle and lifetime memory, then the server stops."""
        r = self.result
        pid = self.server_pid()
        r["idle_rss_mib_after_all"] = round(proc_status_kib(pid, "VmRSS") / 1024.0, 1)
        r["memory_after_all"] = self.memory(pid)
        # VmHWM was reset before each run: the lifetime peak is the largest of those it held.
        lifetime = max([proc_status_kib(pid, "VmHWM") or 0, *self.peaks.get(pid, [])])
        r["peak_rss_mib_lifetime"] = round(lifetime / 1024.0, 1)
        log(f"{self.a.store}: idle RSS after the workloads {r['idle_rss_mib_after_all']} MiB")
        self.stop_server()

    def ceilings(self, shared=None):
        """The ceilings; `shared`: those another store's bench measured in this script
        (the HTTP, argon2id and signature ceilings depend on the machine, not the store)."""
        ceil = {}
        if shared is not None:
            ceil.update({k: v for k, v in shared.items() if k != "pgbench"})
        else:
            log("ceiling: bare axum hello")
            ceil["hello"] = self.hello()
            log("ceiling: argon2id, RS256 and ES256")
            p = subprocess.run([self.a.ceilings_bin, "3"], capture_output=True, text=True, check=True)
            ceil.update(json.loads(p.stdout))
        if self.a.store == "postgres":
            log("ceiling: pgbench")
            ceil["pgbench"] = self.pgbench()
        else:
            self.result["notes"].append("No database ceiling on SQLite: pgbench measures Postgres only.")
        self.result["ceilings"] = ceil
        return ceil


def run_all(benches, args):
    """Every workload level on every store in turn (the first store alternating from one
    level to the next), so that a comparison between the stores compares runs minutes
    apart on the same host, not two scripts half an hour apart (the host's speed drifts
    by up to a fifth within minutes on the machines this runs on)."""
    for b in benches:
        b.prepare()
    for name in args.workloads:
        log(f"workload {name}")
        for j, c in enumerate(args.concurrency):
            for r in range(args.runs):
                turn = (args.workloads.index(name) + j + r) % 2
                order = benches if turn == 0 else benches[::-1]
                for b in order:
                    b.workload_run(name, c, r, [o for o in benches if o is not b])
    time.sleep(2.0)
    for b in benches:
        b.finish()
    if not args.no_ceilings:
        shared = None
        for b in benches:
            shared = b.ceilings(shared)


def summarize(runs):
    """The median of every numeric figure over the runs; peak RSS is the maximum."""
    out = {}
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for k in keys:
        vals = [x[k] for x in runs if isinstance(x.get(k), (int, float))]
        if not vals:
            continue
        out[k] = max(vals) if k == "peak_rss_mib" else statistics.median(vals)
    pg = [x["pg"] for x in runs if x.get("pg")]
    if pg:
        out["pg"] = {k: (statistics.median([d[k] for d in pg]) if pg[0][k] is not None else None)
                     for k in pg[0]}
    kinds = {}
    for x in runs:
        for k, v in (x.get("error_kinds") or {}).items():
            kinds[k] = kinds.get(k, 0) + v
    if kinds:
        out["error_kinds"] = kinds
    return out


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_line(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return None


def machine(args):
    cpu = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = proc_meminfo_mib()
    info = {
        "nproc": os.cpu_count() and int(first_line(["nproc"]) or os.cpu_count()),
        "cpu_model": cpu,
        "memory_mib": mem,
        "kernel": platform.release(),
    }
    versions = {
        "tessera": first_line([args.tessera, "--version"]),
        "tessera_commit": first_line(["git", "-C", os.path.dirname(HERE), "rev-parse", "--short", "HEAD"]),
        "rustc": first_line(["rustc", "--version"]),
        "wrk": first_line(["wrk", "-v"]),
        "python": platform.python_version(),
    }
    if args.store == "postgres":
        versions["postgres"] = psql(args.admin_url, "SHOW server_version")
        versions["pgbench"] = first_line(["pgbench", "--version"])
        settings = {}
        for s in ("synchronous_commit", "shared_buffers", "max_connections", "fsync"):
            settings[s] = psql(args.admin_url, f"SHOW {s}")
        info["postgres_settings"] = settings
        # bench/run sets it (loopback); recorded so that the report says how it connected.
        info["pg_sslmode"] = os.environ.get("PGSSLMODE", "prefer (libpq's default)")
        host = urllib.parse.unquote(urllib.parse.urlsplit(args.admin_url).hostname or "")
        info["pg_transport"] = f"the Unix socket in {host}" if host.startswith("/") else f"TCP to {host}"
    return info, versions


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def proc_meminfo_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tessera", required=True)
    p.add_argument("--hello-bin", required=True)
    p.add_argument("--ceilings-bin", required=True)
    p.add_argument("--flows-bin", required=True, help="the code flow's load generator")
    p.add_argument("--store", required=True,
                   help="postgres, sqlite, or both (postgres,sqlite): every workload level on "
                        "each store in turn")
    p.add_argument("--db-url")
    p.add_argument("--db-name")
    p.add_argument("--admin-url")
    p.add_argument("--tmp", required=True)
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--workloads", default="all")
    p.add_argument("--no-ceilings", action="store_true")
    p.add_argument("--stats-settle", type=float, default=11.0,
                   help="seconds to wait after a Postgres run for the statistics to arrive")
    p.add_argument("--json", required=True)
    args = p.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    every = ["discovery", "jwks", "client_credentials_opaque", "client_credentials_jwt",
             "introspection_json", "introspection_jwt", "refresh", "refresh_es256", "code_flow"]
    args.workloads = every if args.workloads == "all" else args.workloads.split(",")
    unknown = set(args.workloads) - set(every)
    if unknown:
        p.error(f"unknown workloads: {', '.join(sorted(unknown))} (known: {', '.join(every)})")

    stores = [x for x in args.store.split(",") if x]
    if not stores or set(stores) - {"postgres", "sqlite"} or len(set(stores)) != len(stores):
        p.error(f"--store: postgres, sqlite or postgres,sqlite, not {args.store}")
    if "postgres" in stores and not (args.db_url and args.db_name and args.admin_url):
        p.error("the Postgres store needs --db-url, --db-name and --admin-url")
    benches = []
    for store in stores:
        a = argparse.Namespace(**vars(args))
        a.store = store
        a.port = args.port if args.port and len(stores) == 1 else free_port()
        # Each store's server keeps its own data folder, log and token files.
        a.tmp = args.tmp if len(stores) == 1 else os.path.join(args.tmp, store)
        os.makedirs(a.tmp, exist_ok=True)
        benches.append(Bench(a))
    started = time.time()
    load_start = loadavg()
    try:
        run_all(benches, args)
    finally:
        for b in benches:
            b.stop_server()
    total_s = round(time.time() - started, 1)
    load_end = loadavg()
    results = {}
    for b in benches:
        info, versions = machine(b.a)
        result = b.result
        result.update(
            date=time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
            machine=info,
            versions=versions,
            method={
                "concurrency": args.concurrency,
                "duration_s": args.duration,
                "runs": args.runs,
                "load_generator": "wrk -t1 (closed loop) with bench/lua/*.lua; the code flow with "
                                  "bench/hello's flows (hyper, one thread, one task per concurrent "
                                  "browser)",
                "workloads": args.workloads,
                "total_s": total_s,
                "loadavg_1min_start": load_start,
                "loadavg_1min_end": load_end,
                # The stores whose runs alternated with this one's, level by level (their
                # servers idle, but running, while this one was measured).
                "interleaved_with": [o for o in stores if o != b.a.store],
            },
        )
        results[b.a.store] = result
    doc = {}
    if os.path.exists(args.json):
        try:
            with open(args.json) as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError):
            doc = {}
    doc.update(results)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
