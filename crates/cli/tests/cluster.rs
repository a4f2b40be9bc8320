//! A three-node cluster of real `medledger serve` processes on 127.0.0.11,
//! .12 and .13. Node-to-node traffic goes through a TCP proxy in front of
//! each node, so a test can cut a node off. Every test ends the same way:
//! every acknowledged transaction is on every node, and the nodes' ledgers
//! are byte-identical (segments compared) and verify.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_ledger::{ClusterMember, Ledger, RegisterPayload, Role, kind, now_ms, read_key_file};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who a proxy turns away.
#[derive(Default)]
struct Blocked {
    all: bool,
    from: HashSet<IpAddr>,
}

/// A TCP proxy in front of one node, standing for the network between
/// nodes: it can drop everything, or everything from one node.
struct Proxy {
    addr: SocketAddr,
    blocked: Arc<Mutex<Blocked>>,
    conns: Arc<Mutex<Vec<(IpAddr, TcpStream)>>>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    fn start(listen: SocketAddr, target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(listen).expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let blocked = Arc::new(Mutex::new(Blocked::default()));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (b, c) = (blocked.clone(), conns.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(inbound) = stream else { continue };
                let Ok(peer) = inbound.peer_addr() else {
                    continue;
                };
                {
                    let b = b.lock().unwrap();
                    if b.all || b.from.contains(&peer.ip()) {
                        let _ = inbound.shutdown(Shutdown::Both);
                        continue;
                    }
                }
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(i2), Ok(o2)) = (inbound.try_clone(), outbound.try_clone()) else {
                    continue;
                };
                if let Ok(keep) = inbound.try_clone() {
                    c.lock().unwrap().push((peer.ip(), keep));
                }
                std::thread::spawn(move || pipe(inbound, outbound));
                std::thread::spawn(move || pipe(o2, i2));
            }
        });
        Proxy {
            addr,
            blocked,
            conns,
        }
    }

    /// Drops every connection (and open one) from `ip`, or from anyone.
    fn cut(&self, ip: Option<IpAddr>) {
        let mut b = self.blocked.lock().unwrap();
        match ip {
            Some(ip) => {
                b.from.insert(ip);
            }
            None => b.all = true,
        }
        for (from, s) in self.conns.lock().unwrap().iter() {
            if ip.is_none() || ip == Some(*from) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn heal(&self) {
        *self.blocked.lock().unwrap() = Blocked::default();
    }
}

struct Node {
    id: u64,
    dir: PathBuf,
    ip: IpAddr,
    api: SocketAddr,
    proxy: Proxy,
    child: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
}

fn port_on(ip: IpAddr) -> SocketAddr {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
}

impl Node {
    fn base(&self) -> String {
        format!("http://{}", self.api)
    }

    fn start(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = bin()
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen", &self.api.to_string()])
            .env("RUST_LOG", "info,openraft=warn,tower_http=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while status(self).is_none() {
            if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("node {} exited ({s}):\n{}", self.id, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not come up",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown at all.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signals a child process this test spawned.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(s)) = c.try_wait() {
                    assert!(
                        s.success(),
                        "node {} stopped with {s}:\n{}",
                        self.id,
                        self.log_text()
                    );
                    return;
                }
                assert!(Instant::now() < deadline, "node {} did not stop", self.id);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn status(node: &Node) -> Option<Value> {
    let r = http()
        .get(format!("{}/v1/status", node.base()))
        .send()
        .ok()?;
    r.json().ok()
}

struct Cluster {
    _tmp: tempfile::TempDir,
    nodes: Vec<Node>,
    admin: SigningKey,
    doctors: Vec<SigningKey>,
}

impl Cluster {
    /// Three nodes; `env` is given to every node, `env_of(id)` to one.
    fn start(env: &[(&str, &str)], env_of: impl Fn(u64) -> Vec<(String, String)>) -> Cluster {
        Self::start_with(false, env, env_of)
    }

    /// Three nodes; with `tls`, node-to-node traffic is mutual TLS on a
    /// listener of its own.
    fn start_with(
        tls: bool,
        env: &[(&str, &str)],
        env_of: impl Fn(u64) -> Vec<(String, String)>,
    ) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        let mut first_key = String::new();
        for id in 1..=3u64 {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8));
            let api = port_on(ip);
            let cluster_port = port_on(ip);
            let proxy = Proxy::start(SocketAddr::new(ip, 0), if tls { cluster_port } else { api });
            let scheme = if tls { "https" } else { "http" };
            let dir = tmp.path().join(format!("n{id}"));
            let mut cmd = bin();
            cmd.arg("init").arg("--data-dir").arg(&dir).args([
                "--origin",
                ORIGIN,
                "--cluster-id",
                &id.to_string(),
            ]);
            if id == 1 {
                cmd.args(["--cluster-addr", &format!("{scheme}://{}", proxy.addr)]);
                if tls {
                    cmd.args(["--cluster-api", &format!("http://{api}")]);
                }
            } else {
                cmd.arg("--join");
                if tls {
                    cmd.args(["--trust", &first_key]);
                }
            }
            let out = cmd.output().expect("init");
            assert!(out.status.success(), "init: {}", text(&out).1);
            if id == 1 {
                first_key = text(&out)
                    .0
                    .lines()
                    .find_map(|l| l.strip_prefix("node key:"))
                    .map(|k| k.trim().to_owned())
                    .expect("init prints the node key");
            }
            let mut all: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            all.extend(env_of(id));
            if tls {
                all.push(("MEDLEDGER_CLUSTER_LISTEN".into(), cluster_port.to_string()));
            }
            nodes.push(Node {
                id,
                log: tmp.path().join(format!("n{id}.log")),
                dir,
                ip,
                api,
                proxy,
                child: None,
                env: all,
            });
        }
        for n in &mut nodes {
            n.start();
        }
        let admin = read_key_file(&nodes[0].dir.join("admin.key")).expect("admin key");
        let mut c = Cluster {
            _tmp: tmp,
            nodes,
            admin,
            doctors: Vec::new(),
        };
        let leader = c.leader(Duration::from_secs(20));
        assert_eq!(leader, 0, "the first node leads a new cluster");
        let mut txs = Vec::new();
        for n in &c.nodes[1..] {
            let key = read_key_file(&n.dir.join("node.key")).expect("node key");
            let p = RegisterPayload {
                key: keys::public_key(&key),
                role: Role::Node,
                institution: format!("Institution {}", n.id),
                label: format!("node {}", n.id),
                patient: None,
                cluster: Some(ClusterMember {
                    id: n.id,
                    addr: format!("{}://{}", if tls { "https" } else { "http" }, n.proxy.addr),
                    api: tls.then(|| n.base()),
                }),
            };
            txs.push(
                Transaction::sign(
                    &c.admin,
                    kind::REGISTER,
                    now_ms(),
                    &serde_json::to_value(p).unwrap(),
                )
                .unwrap(),
            );
        }
        for _ in 0..4 {
            let doctor = keys::generate().unwrap();
            txs.push(register_tx(&c.admin, &doctor));
            c.doctors.push(doctor);
        }
        let acked = submit_batch(&c.nodes[0].base(), &txs);
        assert_eq!(acked.len(), txs.len(), "registrations acknowledged");
        // Every node becomes a voter and holds the same ledger.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let voters: Vec<usize> = c
                .nodes
                .iter()
                .filter_map(status)
                .map(|s| s["cluster"]["voters"].as_array().map_or(0, Vec::len))
                .collect();
            if voters == [3, 3, 3] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "voters never reached 3: {voters:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c.converge(&[0, 1, 2]);
        c
    }

    /// Index of the node that leads (and says so), waiting up to `wait`.
    fn leader(&self, wait: Duration) -> usize {
        self.leader_among(&[0, 1, 2], wait)
    }

    fn leader_among(&self, among: &[usize], wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        loop {
            for &i in among {
                if let Some(s) = status(&self.nodes[i])
                    && s["cluster"]["state"] == "leader"
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no leader among {among:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the nodes `which` hold the same log (size and root) and
    /// have applied every entry they know of; returns the size.
    fn converge(&self, which: &[usize]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s: Vec<Option<Value>> = which.iter().map(|&i| status(&self.nodes[i])).collect();
            if s.iter().all(Option::is_some) {
                let s: Vec<Value> = s.into_iter().flatten().collect();
                let same = s.iter().all(|x| {
                    x["log_size"] == s[0]["log_size"]
                        && x["log_root"] == s[0]["log_root"]
                        && x["cluster"]["last_applied"] == x["cluster"]["last_log_index"]
                });
                if same {
                    return s[0]["log_size"].as_u64().unwrap_or(0);
                }
                if Instant::now() > deadline {
                    panic!("nodes {which:?} never converged: {s:#?}");
                }
            }
            assert!(Instant::now() < deadline, "nodes {which:?} unreachable");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i` holds at least as much as the others held
    /// when this was called (for use while writes go on).
    fn catch_up(&self, i: usize) {
        let target = self
            .nodes
            .iter()
            .filter_map(status)
            .filter_map(|s| s["log_size"].as_u64())
            .max()
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let have = status(&self.nodes[i]).and_then(|s| s["log_size"].as_u64());
            if have.is_some_and(|h| h >= target) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} stuck at {have:?} of {target}",
                self.nodes[i].id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Isolates node `i`: nobody reaches it and it reaches nobody.
    fn isolate(&self, i: usize) {
        self.nodes[i].proxy.cut(None);
        for (j, n) in self.nodes.iter().enumerate() {
            if j != i {
                n.proxy.cut(Some(self.nodes[i].ip));
            }
        }
    }

    fn heal(&self) {
        for n in &self.nodes {
            n.proxy.heal();
        }
    }

    /// Stops every node, then checks that each holds every acknowledged
    /// transaction and none of `absent`, that the ledgers verify, and that
    /// their segment files are byte-identical.
    fn finish(self, acked: &HashSet<[u8; 32]>, absent: &[[u8; 32]]) {
        self.finish_on(&[0, 1, 2], acked, absent);
    }

    /// [`Cluster::finish`] for the nodes `which` only.
    fn finish_on(mut self, which: &[usize], acked: &HashSet<[u8; 32]>, absent: &[[u8; 32]]) {
        let size = self.converge(which);
        for n in &mut self.nodes {
            n.stop();
        }
        let mut segments: Option<Vec<(String, Vec<u8>)>> = None;
        for n in which.iter().map(|&i| &self.nodes[i]) {
            let ledger = Ledger::open_cluster(&n.dir).expect("open ledger");
            assert_eq!(ledger.state.tip().log.size(), size);
            let ids: Vec<&[u8; 32]> = acked.iter().collect();
            let found = ledger.store.index().leaves_of(&ids).expect("index");
            let missing = found.iter().filter(|l| l.is_none()).count();
            assert_eq!(
                missing, 0,
                "node {}: {missing} acknowledged transactions missing",
                n.id
            );
            let gone: Vec<&[u8; 32]> = absent.iter().collect();
            let found = ledger.store.index().leaves_of(&gone).expect("index");
            assert!(
                found.iter().all(Option::is_none),
                "node {} holds a transaction that must not be committed",
                n.id
            );
            drop(ledger);
            assert_verifies(&n.dir);
            let mut files: Vec<(String, Vec<u8>)> = segment_files(&n.dir)
                .into_iter()
                .map(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read(&p).expect("segment"))
                })
                .collect();
            files.sort();
            match &segments {
                None => segments = Some(files),
                Some(first) => assert!(
                    *first == files,
                    "node {}'s segment files differ from node 1's",
                    n.id
                ),
            }
        }
        eprintln!(
            "{} acknowledged transactions on {} identical ledgers of {size}",
            acked.len(),
            which.len()
        );
    }
}

/// Submits `txs` as one batch to `base` (following a redirect to the
/// leader); returns the ids acknowledged with a receipt.
fn submit_batch(base: &str, txs: &[Transaction]) -> Vec<[u8; 32]> {
    let body: Vec<_> = txs.iter().map(|t| t.to_wire().unwrap()).collect();
    let Ok(resp) = http()
        .post(format!("{base}/v1/transactions"))
        .json(&body)
        .send()
    else {
        return Vec::new();
    };
    if resp.status() != 200 {
        return Vec::new();
    }
    let Ok(v) = resp.json::<Value>() else {
        return Vec::new();
    };
    let results = v["results"].as_array().cloned().unwrap_or_default();
    txs.iter()
        .zip(results)
        .filter(|(t, r)| {
            r["status"] == 200
                && r["receipt"].is_string()
                && r["id"].as_str() == Some(hex::encode(t.id()).as_str())
        })
        .map(|(t, _)| *t.id())
        .collect()
}

/// Acknowledged ids with the times their request was sent and answered.
type Acks = Arc<Mutex<Vec<(Instant, Instant, [u8; 32])>>>;

/// Writers that keep submitting small batches to every node in turn and
/// record what was acknowledged, and when.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Acks,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(c: &Cluster, batch: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let bases: Vec<String> = c.nodes.iter().map(Node::base).collect();
        let threads = c
            .doctors
            .iter()
            .enumerate()
            .map(|(k, doctor)| {
                let (stop, acked, bases, doctor) =
                    (stop.clone(), acked.clone(), bases.clone(), doctor.clone());
                std::thread::spawn(move || {
                    let mut i = k as u64 * 1_000_000;
                    let mut target = k;
                    while !stop.load(Ordering::SeqCst) {
                        let txs: Vec<Transaction> = (0..batch)
                            .map(|_| {
                                i += 1;
                                report_tx(&doctor, i)
                            })
                            .collect();
                        let sent = Instant::now();
                        let ok = submit_batch(&bases[target % bases.len()], &txs);
                        let now = Instant::now();
                        if ok.is_empty() {
                            target += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        acked
                            .lock()
                            .unwrap()
                            .extend(ok.into_iter().map(|id| (sent, now, id)));
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            threads,
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// The first acknowledgement of a request sent after `t`.
    fn first_after(&self, t: Instant) -> Option<Instant> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _, _)| *sent > t)
            .map(|(_, at, _)| *at)
            .min()
    }

    fn wait_for_more(&self, n: usize, wait: Duration) {
        let target = self.count() + n;
        let deadline = Instant::now() + wait;
        while self.count() < target {
            assert!(
                Instant::now() < deadline,
                "writes stalled at {}",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(self) -> HashSet<[u8; 32]> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("writer");
        }
        let acked = self.acked.lock().unwrap();
        acked.iter().map(|(_, _, id)| *id).collect()
    }
}

/// One cluster at a time: nine processes on a small machine would starve
/// each other's heartbeats and turn a test about one failure into many.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Loopback addresses other than 127.0.0.1 are needed; Linux has them.
/// Holds the one-cluster lock for the test.
fn supported() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    TcpListener::bind("127.0.0.12:0").is_ok().then_some(guard)
}

#[test]
fn killed_leader_is_replaced_and_no_acknowledged_write_is_lost() {
    let Some(_one) = supported() else {
        return;
    };
    let mut c = Cluster::start(&[], |_| Vec::new());
    let load = Load::start(&c, 50);
    load.wait_for_more(2_000, Duration::from_secs(60));
    let old = c.leader(Duration::from_secs(5));
    let killed_at = Instant::now();
    c.nodes[old].kill();
    let rest: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = c.leader_among(&rest, Duration::from_secs(30));
    load.wait_for_more(2_000, Duration::from_secs(60));
    let first = load.first_after(killed_at).expect("writes resumed");
    eprintln!(
        "failover: leader {} killed; node {} leads; first write acknowledged {:.2} s after the kill",
        c.nodes[old].id,
        c.nodes[new].id,
        (first - killed_at).as_secs_f64()
    );
    c.nodes[old].start();
    load.wait_for_more(1_000, Duration::from_secs(60));
    let acked = load.stop();
    c.finish(&acked, &[]);
}

#[test]
fn node_down_for_100k_transactions_catches_up_from_a_snapshot() {
    let Some(_one) = supported() else {
        return;
    };
    let total = env_count("MEDLEDGER_CATCH_UP_TXS", 100_000) as usize;
    let mut c = Cluster::start(
        &[
            ("MEDLEDGER_RAFT_SNAPSHOT_EVERY", "20"),
            ("MEDLEDGER_RAFT_KEEP_LOGS", "5"),
        ],
        |_| Vec::new(),
    );
    let leader = c.leader(Duration::from_secs(5));
    let down = (leader + 1) % 3;
    c.nodes[down].kill();
    let before = c.converge(&[leader, (leader + 2) % 3]);
    // Signed up front, sent from four writers in batches of 1,000.
    let mut acked = HashSet::new();
    let per = total / c.doctors.len();
    let base = c.nodes[leader].base();
    let chunks: Vec<Vec<Transaction>> = c
        .doctors
        .iter()
        .enumerate()
        .map(|(k, d)| {
            (0..per)
                .map(|i| report_tx(d, (k * per + i) as u64 + 10_000_000))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|txs| {
            let base = base.clone();
            std::thread::spawn(move || {
                let mut ok = Vec::new();
                for batch in txs.chunks(1000) {
                    ok.extend(submit_batch(&base, batch));
                }
                ok
            })
        })
        .collect();
    for h in handles {
        acked.extend(h.join().expect("writer"));
    }
    let written = started.elapsed();
    assert_eq!(
        acked.len(),
        per * c.doctors.len(),
        "every write acknowledged"
    );
    let up: Vec<usize> = (0..3).filter(|&i| i != down).collect();
    let size = c.converge(&up);
    let s = status(&c.nodes[leader]).expect("leader status");
    let purged = s["cluster"]["purged"].as_u64().unwrap_or(0);
    assert!(purged > 0, "the leader purged its Raft log: {s}");
    eprintln!(
        "wrote {} transactions to two of three nodes in {:.1} s",
        acked.len(),
        written.as_secs_f64()
    );
    let restarted = Instant::now();
    c.nodes[down].start();
    c.converge(&[0, 1, 2]);
    let took = restarted.elapsed().as_secs_f64();
    let s = status(&c.nodes[down]).expect("status");
    assert!(
        s["cluster"]["snapshot"].as_u64().is_some(),
        "the node that was down installed a snapshot: {s}"
    );
    eprintln!(
        "catch-up: {} transactions in {:.1} s from restart, {:.0} tx/s",
        size - before,
        took,
        (size - before) as f64 / took
    );
    c.finish(&acked, &[]);
}

#[test]
fn cut_off_leader_acknowledges_nothing_and_no_fork_appears() {
    let Some(_one) = supported() else {
        return;
    };
    let c = Cluster::start(&[], |_| Vec::new());
    let old = c.leader(Duration::from_secs(5));
    let mut acked: HashSet<[u8; 32]> = HashSet::new();
    acked.extend(submit_batch(
        &c.nodes[old].base(),
        &[report_tx(&c.doctors[0], 1)],
    ));
    c.isolate(old);
    // The minority leader cannot reach a quorum: nothing it takes is acknowledged.
    let lost = report_tx(&c.doctors[1], 2);
    let wire = lost.to_wire().unwrap();
    let answer = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/v1/transactions", c.nodes[old].base()))
        .json(&wire)
        .send();
    if let Ok(r) = answer {
        assert_ne!(r.status(), 200, "a cut-off leader acknowledged a write");
    }
    let rest: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = c.leader_among(&rest, Duration::from_secs(30));
    let more: Vec<Transaction> = (0..20).map(|i| report_tx(&c.doctors[2], 100 + i)).collect();
    let ok = submit_batch(&c.nodes[new].base(), &more);
    assert_eq!(ok.len(), more.len(), "the majority goes on writing");
    acked.extend(ok);
    c.heal();
    c.converge(&[0, 1, 2]);
    let s = status(&c.nodes[old]).expect("status");
    assert_ne!(
        s["cluster"]["state"], "leader",
        "the old leader stepped down"
    );
    c.finish(&acked, &[*lost.id()]);
}

#[test]
fn rolling_restart_under_load_loses_nothing() {
    let Some(_one) = supported() else {
        return;
    };
    let mut c = Cluster::start(&[], |_| Vec::new());
    let load = Load::start(&c, 50);
    load.wait_for_more(1_000, Duration::from_secs(60));
    for i in 0..3 {
        c.nodes[i].stop();
        load.wait_for_more(500, Duration::from_secs(60));
        c.nodes[i].start();
        c.catch_up(i);
        load.wait_for_more(500, Duration::from_secs(60));
    }
    let acked = load.stop();
    c.finish(&acked, &[]);
}

#[test]
fn faulty_proposer_gets_no_invalid_transaction_into_any_ledger() {
    let Some(_one) = supported() else {
        return;
    };
    let c = Cluster::start(&[], |id| {
        if id == 1 {
            vec![(
                "MEDLEDGER_FAULT_UNCHECKED_ADMISSION".to_string(),
                "1".to_string(),
            )]
        } else {
            Vec::new()
        }
    });
    let leader = c.leader(Duration::from_secs(5));
    assert_eq!(leader, 0, "the faulty node leads");
    // Each is refused by an honest node's admission; the faulty one takes it.
    let mut pii = report_payload(7);
    pii["anamnesis"] = json!("Patient e-mail: pera.peric@example.com, JMBG 0101990710006.");
    let stranger = keys::generate().unwrap();
    let bad = [
        Transaction::sign(&c.doctors[0], kind::MEDICAL_REPORT, now_ms(), &pii).unwrap(),
        report_tx(&stranger, 8),
        Transaction::sign(
            &c.doctors[1],
            kind::REGISTER,
            now_ms(),
            &json!({
                "key": keys::public_key(&stranger), "role": "admin", "institution": "X"
            }),
        )
        .unwrap(),
    ];
    for tx in &bad {
        let ok = submit_batch(&c.nodes[leader].base(), std::slice::from_ref(tx));
        assert!(ok.is_empty(), "an invalid transaction was acknowledged");
    }
    // Valid writes still go through the same faulty leader.
    let good: Vec<Transaction> = (0..10).map(|i| report_tx(&c.doctors[2], 50 + i)).collect();
    let ok = submit_batch(&c.nodes[leader].base(), &good);
    assert_eq!(ok.len(), good.len());
    // Every node's state machine refused the faulty blocks itself.
    for n in &c.nodes {
        let metrics = http()
            .get(format!("{}/metrics", n.base()))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        let refused: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("medledger_blocks_refused_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(refused >= 3.0, "node {} refused {refused} blocks", n.id);
    }
    let absent: Vec<[u8; 32]> = bad.iter().map(|t| *t.id()).collect();
    c.finish(&ok.into_iter().collect(), &absent);
}

#[test]
fn receipts_carry_every_nodes_cosignature_and_watch_sees_one_view() {
    let Some(_one) = supported() else {
        return;
    };
    let c = Cluster::start(&[], |_| Vec::new());
    let tx = report_tx(&c.doctors[0], 77);
    let ok = submit_batch(&c.nodes[1].base(), std::slice::from_ref(&tx));
    assert_eq!(ok.len(), 1);
    c.converge(&[0, 1, 2]);
    let statuses: Vec<Value> = c.nodes.iter().map(|n| status(n).expect("status")).collect();
    let log_keys: Vec<String> = statuses
        .iter()
        .map(|s| s["vkey"].as_str().unwrap().to_owned())
        .collect();
    let cosigners: Vec<String> = statuses
        .iter()
        .map(|s| s["cosigner_vkey"].as_str().unwrap().to_owned())
        .collect();
    // Any node's receipt carries the cosignatures of all three.
    let id = hex::encode(tx.id());
    let receipt = http()
        .get(format!(
            "{}/v1/transactions/{id}/receipt?cosigned=true",
            c.nodes[2].base()
        ))
        .send()
        .and_then(|r| r.text())
        .expect("receipt");
    let file = c._tmp.path().join("r.tlog-proof");
    std::fs::write(&file, &receipt).unwrap();
    let verify = |quorum: usize, cosigners: &[String]| {
        let mut cmd = bin();
        cmd.args(["receipt", "verify"])
            .arg(&file)
            .args(["--id", &id]);
        cmd.args(["--quorum", &quorum.to_string()]);
        for k in log_keys.iter().chain(cosigners) {
            cmd.args(["--key", k]);
        }
        cmd.output().expect("receipt verify")
    };
    let out = verify(3, &cosigners);
    assert!(out.status.success(), "quorum of 3: {}", text(&out).1);
    let out = verify(3, &cosigners[..2]);
    assert!(
        !out.status.success(),
        "two trusted cosigners cannot make a quorum of 3"
    );
    // The auditor sees one view across the three nodes.
    let mut cmd = bin();
    cmd.args(["checkpoint", "watch", "--once", "--state"])
        .arg(c._tmp.path().join("watch.state"));
    for (n, k) in c.nodes.iter().zip(&log_keys) {
        cmd.args(["--url", &n.base(), "--vkey", k]);
    }
    let out = cmd.output().expect("watch");
    assert!(
        out.status.success(),
        "watch over three nodes: {}",
        text(&out).1
    );
    c.finish(&ok.into_iter().collect(), &[]);
}

#[test]
fn mutual_tls_cluster_replicates_and_refuses_a_stranger() {
    let Some(_one) = supported() else {
        return;
    };
    let c = Cluster::start_with(true, &[], |_| Vec::new());
    // Writes through a follower are redirected to the leader's public API.
    let txs: Vec<Transaction> = (0..200)
        .map(|i| report_tx(&c.doctors[0], 300 + i))
        .collect();
    let follower = (c.leader(Duration::from_secs(5)) + 1) % 3;
    let ok = submit_batch(&c.nodes[follower].base(), &txs);
    assert_eq!(ok.len(), txs.len());
    c.converge(&[0, 1, 2]);
    // A key that is no cluster node's cannot talk to the cluster listener,
    // even one that trusts the node it calls.
    let node1 = read_key_file(&c.nodes[0].dir.join("node.key")).unwrap();
    let stranger = keys::generate().unwrap();
    let trust = std::sync::Arc::new(medledger_node::Trust::new(vec![keys::public_key(&node1).0]));
    let configs = medledger_node::tls_configs(&stranger, trust.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let peer = format!("https://{}", c.nodes[0].proxy.addr);
    let fetch = |key_configs: &medledger_node::TlsConfigs| {
        let network = medledger_node::Network::with_tls(None, &key_configs.client);
        let peers = vec![peer.clone()];
        rt.block_on(async {
            tokio::task::spawn_blocking(move || {
                medledger_node::fetch_blocks(&network, &peers, 0, 1, Duration::ZERO)
            })
            .await
            .unwrap()
        })
    };
    let refused = fetch(&configs);
    assert!(refused.is_err(), "a stranger fetched blocks");
    // The node's own key is let in: the refusal was about the key.
    let own = medledger_node::tls_configs(&node1, trust).unwrap();
    let blocks = fetch(&own).expect("a cluster node fetches blocks");
    assert_eq!(blocks.len(), 1);
    // Plain HTTP to the cluster listener gets nowhere.
    let plain = http()
        .get(format!(
            "http://{}/raft/blocks?from=0&to=1",
            c.nodes[0].proxy.addr
        ))
        .send();
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    c.finish(&ok.into_iter().collect(), &[]);
}

#[test]
fn revoking_a_node_removes_it_from_the_cluster() {
    let Some(_one) = supported() else {
        return;
    };
    let c = Cluster::start(&[], |_| Vec::new());
    let leader = c.leader(Duration::from_secs(5));
    let gone = (leader + 1) % 3;
    let key = read_key_file(&c.nodes[gone].dir.join("node.key")).unwrap();
    let revoke = revoke_tx(&c.admin, &key);
    let mut acked: HashSet<[u8; 32]> = submit_batch(&c.nodes[leader].base(), &[revoke])
        .into_iter()
        .collect();
    assert_eq!(acked.len(), 1, "the revocation is acknowledged");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let voters = status(&c.nodes[leader]).map(|s| s["cluster"]["voters"].clone());
        let want = json!(
            [1, 2, 3]
                .into_iter()
                .filter(|id| *id != c.nodes[gone].id)
                .collect::<Vec<u64>>()
        );
        if voters.as_ref() == Some(&want) {
            break;
        }
        assert!(Instant::now() < deadline, "voters stayed {voters:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The two that remain go on writing, and the one removed gets nothing more.
    let rest: Vec<usize> = (0..3).filter(|&i| i != gone).collect();
    let leader = c.leader_among(&rest, Duration::from_secs(10));
    let more: Vec<Transaction> = (0..50).map(|i| report_tx(&c.doctors[0], 900 + i)).collect();
    let ok = submit_batch(&c.nodes[leader].base(), &more);
    assert_eq!(ok.len(), more.len());
    acked.extend(ok);
    let size = c.converge(&rest);
    let removed = status(&c.nodes[gone]).expect("the removed node still answers");
    assert!(removed["log_size"].as_u64().unwrap_or(0) < size);
    c.finish_on(&rest, &acked, &[]);
}

/// A small deterministic generator for kill moments (xorshift64*), seeded
/// from the clock so every run cuts at other instants; the seed is printed.
struct Moments(u64);

impl Moments {
    fn new() -> Moments {
        let seed = std::env::var("MEDLEDGER_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| now_ms() | 1);
        eprintln!("kill moments: MEDLEDGER_TEST_SEED={seed}");
        Moments(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

impl Cluster {
    /// SIGKILL to every node at once (a power cut of the whole cluster; the
    /// page cache survives, as it does for a process crash).
    fn kill_all(&mut self) {
        let children: Vec<Child> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.take())
            .collect();
        for c in &children {
            // SAFETY: signals a child process this test spawned.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
        }
        for mut c in children {
            let _ = c.wait();
        }
    }
}

/// Cycles of: writes under load, every node killed at the same instant at a
/// random moment, every node restarted (in a varying order, sometimes one
/// alone for a while first). The cluster must come back each time.
fn power_cuts(cycles: usize) {
    let Some(_one) = supported() else {
        return;
    };
    let mut moments = Moments::new();
    let mut c = Cluster::start(&[], |_| Vec::new());
    let load = Load::start(&c, 20);
    load.wait_for_more(200, Duration::from_secs(60));
    const ORDERS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for cycle in 0..cycles {
        std::thread::sleep(Duration::from_millis(moments.below(1_500)));
        c.kill_all();
        let order = ORDERS[cycle % ORDERS.len()];
        for (k, &i) in order.iter().enumerate() {
            c.nodes[i].start();
            if k == 0 && cycle % 3 == 1 {
                // One node alone: no quorum, so nothing may be committed,
                // and it must not give up waiting for its peers.
                std::thread::sleep(Duration::from_millis(500 + moments.below(1_500)));
            } else {
                std::thread::sleep(Duration::from_millis(moments.below(300)));
            }
        }
        for n in &mut c.nodes {
            if let Some(Ok(Some(s))) = n.child.as_mut().map(|ch| ch.try_wait()) {
                panic!(
                    "cycle {cycle}: node {} exited ({s}):\n{}",
                    n.id,
                    n.log_text()
                );
            }
        }
        load.wait_for_more(100, Duration::from_secs(90));
        eprintln!("cycle {cycle}: back, {} acknowledged so far", load.count());
    }
    let acked = load.stop();
    c.finish(&acked, &[]);
}

#[test]
fn cluster_survives_power_cuts_of_every_node_at_once() {
    let cycles = std::env::var("MEDLEDGER_POWER_CUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    power_cuts(cycles);
}

/// A patient whose record the access tests read.
const READ_PATIENT: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

/// A reader and a data-protection officer, registered, with a token for
/// each on every node; and one committed record about [`READ_PATIENT`].
struct Readers {
    record: String,
    acked: HashSet<[u8; 32]>,
    /// The doctor's and the officer's token on each node.
    tokens: Vec<(String, String)>,
}

fn readers(c: &Cluster) -> Readers {
    let dpo = keys::generate().unwrap();
    let p = RegisterPayload {
        key: keys::public_key(&dpo),
        role: Role::DataProtectionOfficer,
        institution: "Klinicki centar Nis".into(),
        label: "test officer".into(),
        patient: None,
        cluster: None,
    };
    let reg = Transaction::sign(
        &c.admin,
        kind::REGISTER,
        now_ms(),
        &serde_json::to_value(p).unwrap(),
    )
    .unwrap();
    let mut payload = report_payload(1);
    payload["patient"] = json!(READ_PATIENT);
    let report =
        Transaction::sign(&c.doctors[0], kind::MEDICAL_REPORT, now_ms(), &payload).unwrap();
    let leader = c.leader(Duration::from_secs(10));
    let acked = submit_batch(&c.nodes[leader].base(), &[reg, report.clone()]);
    assert_eq!(acked.len(), 2, "officer and record acknowledged");
    c.converge(&[0, 1, 2]);
    let tokens = c
        .nodes
        .iter()
        .map(|n| {
            (
                issue_token(&n.dir, &c.doctors[0]),
                issue_token(&n.dir, &dpo),
            )
        })
        .collect();
    Readers {
        record: hex::encode(report.id()),
        acked: acked.into_iter().collect(),
        tokens,
    }
}

/// One read of `id` through `node`: the status and the body. The client
/// waits up to `wait` and follows no redirect.
fn read_record(node: &Node, id: &str, token: &str, wait: Duration) -> (u16, String) {
    let r = reqwest::blocking::Client::builder()
        .timeout(wait)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/v1/transactions/{id}", node.base()))
        .bearer_auth(token)
        .header("x-purpose-of-use", "TREAT")
        .send()
        .unwrap_or_else(|e| panic!("node {}: the read got no answer: {e}", node.id));
    let status = r.status().as_u16();
    (status, r.text().expect("body"))
}

/// Asserts that a read was refused for want of its access entry and that
/// its answer holds nothing of the record.
fn assert_refused_without_data(node: &Node, (status, body): &(u16, String)) {
    assert_eq!(*status, 503, "node {}: {body}", node.id);
    let v: Value = serde_json::from_str(body).expect("a problem document");
    assert_eq!(v["code"], "access_log_unavailable", "{v}");
    assert!(v.get("transaction").is_none(), "{v}");
    for secret in [READ_PATIENT, "Oseltamivir", "receipt"] {
        assert!(
            !body.contains(secret),
            "a refused read leaked {secret}: {body}"
        );
    }
}

/// The access entries in `patient`'s log on `node`: id and author (the
/// node that served the read), oldest first.
fn access_log(node: &Node, token: &str, patient: &str) -> Vec<(String, String)> {
    let r = http()
        .get(format!(
            "{}/v1/patients/{patient}/access-log?limit=1000",
            node.base()
        ))
        .bearer_auth(token)
        .send()
        .expect("access log");
    assert_eq!(r.status(), 200, "node {}", node.id);
    let v: Value = r.json().expect("json");
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "access.entry")
        .map(|e| {
            let field = |k: &str| e[k].as_str().expect(k).to_owned();
            (field("id"), field("author"))
        })
        .collect()
}

#[test]
fn leader_that_lost_its_quorum_answers_no_read() {
    let Some(_one) = supported() else {
        return;
    };
    let mut c = Cluster::start(&[("MEDLEDGER_ACCESS_LOG_TIMEOUT_MS", "3000")], |_| {
        Vec::new()
    });
    let r = readers(&c);
    let leader = c.leader(Duration::from_secs(5));
    let (doctor, _) = &r.tokens[leader];
    let ok = read_record(&c.nodes[leader], &r.record, doctor, Duration::from_secs(30));
    assert_eq!(ok.0, 200, "{}", ok.1);
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &f in &followers {
        c.nodes[f].kill();
    }
    // The leader cannot make the entry durable on a quorum: the read is
    // refused within the access-log timeout, with nothing of the record.
    for _ in 0..3 {
        let answer = read_record(&c.nodes[leader], &r.record, doctor, Duration::from_secs(30));
        assert_refused_without_data(&c.nodes[leader], &answer);
    }
    for &f in &followers {
        c.nodes[f].start();
    }
    let leader = c.leader(Duration::from_secs(30));
    let (doctor, _) = &r.tokens[leader];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) =
            read_record(&c.nodes[leader], &r.record, doctor, Duration::from_secs(30));
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "reads never resumed: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.finish(&r.acked, &[]);
}

#[test]
fn reads_through_three_nodes_leave_one_access_log_on_every_node() {
    let Some(_one) = supported() else {
        return;
    };
    let c = Cluster::start(&[], |_| Vec::new());
    let r = readers(&c);
    let before = access_log(&c.nodes[0], &r.tokens[0].1, READ_PATIENT);
    // Two reads through each node, leader and followers alike.
    let mut served = 0;
    for round in 0..2 {
        for (i, n) in c.nodes.iter().enumerate() {
            let (status, body) = read_record(n, &r.record, &r.tokens[i].0, Duration::from_secs(30));
            assert_eq!(status, 200, "round {round}, node {}: {body}", n.id);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["id"], r.record.as_str());
            served += 1;
        }
    }
    c.converge(&[0, 1, 2]);
    let logs: Vec<Vec<(String, String)>> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| access_log(n, &r.tokens[i].1, READ_PATIENT))
        .collect();
    assert_eq!(
        logs[0].len(),
        before.len() + served,
        "one access entry per read served: {:?}",
        logs[0]
    );
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log, &logs[0], "node {}'s access log differs", c.nodes[i].id);
    }
    // Each entry is signed by the node that served its read: two by each.
    let mut authors = std::collections::HashMap::<&str, usize>::new();
    for (_, author) in &logs[0][before.len()..] {
        *authors.entry(author.as_str()).or_default() += 1;
    }
    let mut want: Vec<(String, usize)> = c
        .nodes
        .iter()
        .map(|n| {
            let key = read_key_file(&n.dir.join("node.key")).unwrap();
            (keys::public_key(&key).to_string(), 2)
        })
        .collect();
    want.sort();
    let mut got: Vec<(String, usize)> = authors
        .into_iter()
        .map(|(a, n)| (a.to_owned(), n))
        .collect();
    got.sort();
    assert_eq!(got, want, "access entries per signing node");
    c.finish(&r.acked, &[]);
}

/// Every file under `dir` that holds `needle`, with the bytes of each file
/// read whole (redb files, segments, logs alike).
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_redaction_erases_the_payload_on_every_node_even_one_that_was_down_through_it() {
    let Some(_one) = supported() else {
        return;
    };
    let mut c = Cluster::start(
        &[
            ("MEDLEDGER_RAFT_SNAPSHOT_EVERY", "20"),
            ("MEDLEDGER_RAFT_KEEP_LOGS", "5"),
        ],
        |_| Vec::new(),
    );
    let leader = c.leader(Duration::from_secs(5));
    let base = c.nodes[leader].base();
    let dpo = keys::generate().expect("key");
    let reg = register_role(&c.admin, &dpo, Role::DataProtectionOfficer, None);
    assert_eq!(submit_batch(&base, &[reg]).len(), 1, "officer registered");
    // A marker no other byte on disk can hold by chance: 16 random bytes,
    // as hex, planted in a report's anamnesis.
    let marker = hex::encode(&keys::generate().expect("key").to_bytes()[..16]);
    let mut p = report_payload(7);
    p["anamnesis"] = json!(format!("told the nurse {marker}"));
    let report =
        Transaction::sign(&c.doctors[0], kind::MEDICAL_REPORT, now_ms(), &p).expect("sign report");
    let mut acked: HashSet<[u8; 32]> = submit_batch(&base, std::slice::from_ref(&report))
        .into_iter()
        .collect();
    assert_eq!(acked.len(), 1, "report acknowledged");
    c.converge(&[0, 1, 2]);
    let down = (leader + 1) % 3;
    assert!(
        !files_holding(&c.nodes[down].dir, marker.as_bytes()).is_empty(),
        "before the redaction the payload is on node {}'s disk",
        c.nodes[down].id
    );
    c.nodes[down].kill();

    let redaction = Transaction::sign(
        &dpo,
        kind::REDACTION,
        now_ms(),
        &json!({
            "targets": [hex::encode(report.id())],
            "basis": "gdpr-art-17",
            "reason": "direct-identifier",
            "patient": p["patient"],
        }),
    )
    .expect("sign redaction");
    let ok = submit_batch(&base, &[redaction]);
    assert_eq!(ok.len(), 1, "redaction acknowledged");
    acked.extend(ok);
    // Enough single-transaction blocks for snapshots and log purges to
    // follow the redaction on the nodes that are up.
    for i in 0..60u64 {
        acked.extend(submit_batch(
            &base,
            &[report_tx(&c.doctors[1], 20_000_000 + i)],
        ));
    }
    let up: Vec<usize> = (0..3).filter(|&i| i != down).collect();
    c.converge(&up);
    c.nodes[down].start();
    c.converge(&[0, 1, 2]);
    let caught_up_by = status(&c.nodes[down]).expect("status")["cluster"]["snapshot"].clone();
    eprintln!("the node that was down caught up (snapshot: {caught_up_by})");

    // Segments and index are erased when the redaction commits; the Raft
    // log is purged and compacted right after, in the background.
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in &c.nodes {
        loop {
            let holding = files_holding(&n.dir, marker.as_bytes());
            if holding.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} still holds the redacted payload in {holding:?}",
                n.id
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for n in &mut c.nodes {
        n.stop();
    }
    for n in &c.nodes {
        let holding = files_holding(&n.dir, marker.as_bytes());
        assert!(
            holding.is_empty(),
            "node {} wrote the payload back in {holding:?}",
            n.id
        );
    }
    for n in &mut c.nodes {
        n.start();
    }
    c.finish(&acked, &[]);
}

#[test]
fn a_node_restored_from_a_backup_rejoins_its_cluster_and_catches_up() {
    let Some(_one) = supported() else {
        return;
    };
    let mut c = Cluster::start(&[], |_| Vec::new());
    let leader = c.leader(Duration::from_secs(5));
    let base = c.nodes[leader].base();
    let mut acked = HashSet::new();
    for i in 0..20u64 {
        acked.extend(submit_batch(
            &base,
            &[report_tx(&c.doctors[0], 30_000_000 + i)],
        ));
    }
    c.converge(&[0, 1, 2]);
    let r = (leader + 1) % 3;
    let vkey = status(&c.nodes[r]).expect("status")["vkey"]
        .as_str()
        .expect("vkey")
        .to_owned();
    let backup = c._tmp.path().join("backup");
    let out = bin()
        .args(["backup", "--data-dir"])
        .arg(&c.nodes[r].dir)
        .arg("--out")
        .arg(&backup)
        .args([
            "--url",
            &c.nodes[r].base(),
            "--vkey",
            &vkey,
            "--include-node-key",
        ])
        .output()
        .expect("backup");
    assert!(out.status.success(), "backup: {:?}", text(&out));
    // The node's disk is lost; the cluster goes on without it.
    c.nodes[r].kill();
    std::fs::remove_dir_all(&c.nodes[r].dir).expect("remove the node's data directory");
    for i in 20..40u64 {
        acked.extend(submit_batch(
            &base,
            &[report_tx(&c.doctors[0], 30_000_000 + i)],
        ));
    }
    assert_eq!(
        acked.len(),
        40,
        "every write acknowledged by the two nodes left"
    );
    let out = bin()
        .args(["restore", "--from"])
        .arg(&backup)
        .arg("--data-dir")
        .arg(&c.nodes[r].dir)
        .args(["--key", &vkey])
        .output()
        .expect("restore");
    assert!(out.status.success(), "restore: {:?}", text(&out));
    c.nodes[r].start();
    c.converge(&[0, 1, 2]);
    let s = status(&c.nodes[r]).expect("status");
    assert_eq!(
        s["cluster"]["voters"].as_array().map(Vec::len),
        Some(3),
        "{s}"
    );
    c.finish(&acked, &[]);
}

/// One signed transaction posted alone to `base` (following a redirect to
/// the leader): the status and the body.
fn post_one(base: &str, tx: &Transaction) -> (u16, Value) {
    let r = http()
        .post(format!("{base}/v1/transactions"))
        .json(&tx.to_wire().unwrap())
        .send()
        .expect("an answer");
    let status = r.status().as_u16();
    (status, r.json().expect("a JSON body"))
}

#[test]
fn two_pharmacies_racing_through_two_nodes_fill_a_single_fill_prescription_once() {
    let Some(_one) = supported() else {
        return;
    };
    let c = Cluster::start(&[], |_| Vec::new());
    let (a, b) = (keys::generate().unwrap(), keys::generate().unwrap());
    let rx = Transaction::sign(
        &c.doctors[0],
        kind::PRESCRIPTION,
        now_ms(),
        &prescription_payload(0),
    )
    .unwrap();
    let leader = c.leader(Duration::from_secs(10));
    let setup = [
        register_role(&c.admin, &a, Role::Pharmacy, None),
        register_role(&c.admin, &b, Role::Pharmacy, None),
        rx.clone(),
    ];
    let mut acked: HashSet<[u8; 32]> = submit_batch(&c.nodes[leader].base(), &setup)
        .into_iter()
        .collect();
    assert_eq!(acked.len(), 3, "pharmacies and prescription acknowledged");
    c.converge(&[0, 1, 2]);

    // Each pharmacy through its own node, a follower and the leader, at
    // the same instant.
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let rx_id = hex::encode(rx.id());
    let dispenses: Vec<Transaction> = [&a, &b]
        .iter()
        .map(|p| {
            Transaction::sign(p, kind::DISPENSE, now_ms(), &dispense_payload(&rx_id, 20)).unwrap()
        })
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let racers: Vec<_> = dispenses
        .iter()
        .cloned()
        .zip([c.nodes[follower].base(), c.nodes[leader].base()])
        .map(|(tx, base)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                post_one(&base, &tx)
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let won: Vec<usize> = (0..2)
        .filter(|&i| answers[i].0 == 200 && answers[i].1["receipt"].is_string())
        .collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one dispense acknowledged: {answers:?}"
    );
    let (winner, loser) = (won[0], 1 - won[0]);
    assert_eq!(answers[winner].1["id"], hex::encode(dispenses[winner].id()));
    assert_eq!(answers[loser].0, 422, "{answers:?}");
    assert_eq!(answers[loser].1["code"], "fills_exhausted", "{answers:?}");
    acked.insert(*dispenses[winner].id());

    // Every node's ledger holds that one dispense, as each node's API says
    // to a pharmacy reading there.
    c.converge(&[0, 1, 2]);
    for n in &c.nodes {
        let token = issue_token(&n.dir, &a);
        let r = http()
            .get(format!(
                "{}/fhir/MedicationDispense?patient={RX_PATIENT}",
                n.base()
            ))
            .bearer_auth(&token)
            .send()
            .expect("search");
        assert_eq!(r.status(), 200, "node {}", n.id);
        let bundle: Value = r.json().expect("a Bundle");
        assert_eq!(bundle["total"], 1, "node {}: {bundle}", n.id);
        assert_eq!(
            bundle["entry"][0]["resource"]["id"],
            hex::encode(dispenses[winner].id()),
            "node {}",
            n.id
        );
    }
    c.finish(&acked, &[*dispenses[loser].id()]);
}
