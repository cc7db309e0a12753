// Load generator: N pairs of users, each pair in its own two-member room. The first
// of each pair sends createMessage at a rising total rate; we time the ack (sender)
// and the delivery of "message" (the other member). One JSON line per rate step on
// stdout. Run: node load.js CONFIG.json
const fs = require("fs");
const { io } = require("socket.io-client");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const now = () => performance.now();
const { TICK, cpuTicks, rssKib, pct, call } = require("./common");

function connect(user, i) {
  const query = cfg.mode === "product" ? { userId: user.id } : { room: `pair${i >> 1}` };
  const opts = { transports: ["websocket"], reconnection: false, query, timeout: 20000 };
  if (cfg.mode === "product") opts.auth = { accessToken: user.token };
  const s = io(cfg.url, opts);
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(new Error(`connect ${i}: ${e.message}`)));
  });
}

let step = null; // counters of the step under way
const sentAt = new Map(); // seq -> send time

function textOf(d) {
  if (d && d.chatMessage) return d.chatMessage.message;
  return d && d.message;
}

async function main() {
  const users = cfg.users;
  const sockets = [];
  for (let i = 0; i < users.length; i += 50) {
    sockets.push(...(await Promise.all(users.slice(i, i + 50).map((u, j) => connect(u, i + j)))));
  }
  const pairs = [];
  for (let p = 0; p < sockets.length / 2; p++) {
    const a = sockets[2 * p], b = sockets[2 * p + 1];
    let chatId = null;
    if (cfg.mode === "product") {
      const r = await call(a, "joinRoom", { otherUserId: users[2 * p + 1].id, accessToken: users[2 * p].token });
      chatId = r.chatHeaderId;
      await call(b, "joinRoom", { chatHeaderId: chatId, accessToken: users[2 * p + 1].token });
    }
    b.on("message", (d) => {
      const text = textOf(d);
      const seq = Number(text.slice(text.indexOf("#") + 1));
      const t0 = sentAt.get(seq);
      if (t0 === undefined || !step) return;
      step.deliv.push(now() - t0);
      sentAt.delete(seq);
    });
    pairs.push({ a, chatId, token: users[2 * p].token });
  }
  process.stdout.write(JSON.stringify({ ready: pairs.length }) + "\n");

  let seq = 0;
  function send(pair) {
    const n = ++seq;
    const payload = { message: `bench #${n}`, chatHeaderId: pair.chatId, messageType: 0 };
    if (cfg.mode === "product" && cfg.tokenPerMessage) payload.accessToken = pair.token;
    const t0 = now();
    sentAt.set(n, t0);
    const st = step;
    st.sent++;
    pair.a.emit("createMessage", payload, (reply) => {
      if (step !== st) return;
      if (textOf(reply) === undefined) st.errors++;
      st.ack.push(now() - t0);
    });
  }

  async function run(rate, seconds, record) {
    step = { rate, sent: 0, errors: 0, ack: [], deliv: [] };
    sentAt.clear();
    const st = step;
    const cpu0 = process.cpuUsage();
    const srv0 = cpuTicks(cfg.serverPid);
    const db0 = cfg.dbPid ? cpuTicks(cfg.dbPid) : NaN;
    const t0 = now();
    let next = 0;
    await new Promise((resolve) => {
      const tick = () => {
        const elapsed = (now() - t0) / 1000;
        if (elapsed >= seconds) return resolve();
        const due = Math.floor(rate * elapsed);
        while (st.sent < due) send(pairs[next++ % pairs.length]);
        setTimeout(tick, 1);
      };
      tick();
    });
    const sendWall = (now() - t0) / 1000;
    const deadline = now() + cfg.grace * 1000;
    while (now() < deadline && (st.ack.length < st.sent || st.deliv.length < st.sent)) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const wall = (now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const srvTicks = cpuTicks(cfg.serverPid) - srv0;
    const dbTicks = cfg.dbPid ? cpuTicks(cfg.dbPid) - db0 : NaN;
    step = null;
    if (!record) return null;
    const ack = st.ack.sort((x, y) => x - y), deliv = st.deliv.sort((x, y) => x - y);
    const r3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
    return {
      rate, seconds, sent: st.sent, acked: ack.length, delivered: deliv.length,
      errors: st.errors, achieved: Math.round(st.sent / sendWall),
      ack_p50: r3(pct(ack, 50)), ack_p90: r3(pct(ack, 90)), ack_p99: r3(pct(ack, 99)),
      deliv_p50: r3(pct(deliv, 50)), deliv_p90: r3(pct(deliv, 90)), deliv_p99: r3(pct(deliv, 99)),
      gen_cpu: Math.round(((cpu.user + cpu.system) / 1e6 / wall) * 1000) / 10,
      server_cpu: Math.round((srvTicks / TICK / wall) * 1000) / 10,
      server_us_per_msg: st.sent ? Math.round((srvTicks / TICK / st.sent) * 1e6) : null,
      db_us_per_msg: st.sent && !isNaN(dbTicks) ? Math.round((dbTicks / TICK / st.sent) * 1e6) : null,
    };
  }

  // Past the ceiling: a rate the server cannot hold for a while, then a normal one.
  // One line per second of sending: what the clients saw for the messages sent in
  // that second (acks, error codes, latency) and the server's RSS at its end.
  async function overload(o) {
    const phases = [["over", o.rate, o.seconds], ["after", o.afterRate, o.afterSeconds]];
    const windows = [];
    const t0 = now();
    let n = 0;
    for (const [phase, rate, seconds] of phases) {
      const p0 = now();
      let sent = 0;
      for (let s = 0; s < seconds; s++) {
        const w = { phase, second: windows.length, rate, sent: 0, acked: 0, codes: {}, ack: [], rss: null };
        windows.push(w);
        const w0 = p0 + s * 1000;
        await new Promise((resolve) => {
          const tick = () => {
            const elapsed = (now() - p0) / 1000;
            if (now() - w0 >= 1000) return resolve();
            const due = Math.floor(rate * elapsed);
            while (sent < due) {
              sent++;
              w.sent++;
              const pair = pairs[n++ % pairs.length];
              const payload = { message: `over #${n}`, chatHeaderId: pair.chatId, messageType: 0 };
              if (cfg.mode === "product" && cfg.tokenPerMessage) payload.accessToken = pair.token;
              const ts = now();
              pair.a.emit("createMessage", payload, (reply) => {
                w.acked++;
                w.ack.push(now() - ts);
                if (textOf(reply) === undefined) {
                  const code = (reply && reply.code) || "no-message";
                  w.codes[code] = (w.codes[code] || 0) + 1;
                }
              });
            }
            setTimeout(tick, 1);
          };
          tick();
        });
        w.rss = rssKib(cfg.serverPid);
      }
    }
    // Replies still on their way are counted where they were sent.
    const deadline = now() + (o.drainSeconds || 20) * 1000;
    while (now() < deadline && windows.some((w) => w.acked < w.sent)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const r3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
    const out = windows.map((w) => {
      const ack = w.ack.sort((x, y) => x - y);
      return { phase: w.phase, second: w.second, rate: w.rate, sent: w.sent, acked: w.acked,
               codes: w.codes, ack_p50: r3(pct(ack, 50)), ack_p99: r3(pct(ack, 99)),
               ack_max: r3(ack.length ? ack[ack.length - 1] : null), rss_kib: w.rss };
    });
    process.stdout.write(JSON.stringify({ overload: out, seconds: (now() - t0) / 1000,
                                          rss_after_drain_kib: rssKib(cfg.serverPid) }) + "\n");
  }

  await run(cfg.warmupRate || cfg.steps[0], cfg.warmup, false);
  const judge = (r) => r.delivered === r.sent && r.acked === r.sent && r.errors === 0 &&
    r.ack_p99 <= cfg.p99Limit && r.deliv_p99 <= cfg.p99Limit && r.achieved >= 0.95 * r.rate;
  // let a backlog drain before the next step
  const pause = (held) => new Promise((res) => setTimeout(res, held ? 200 : 2000));
  let fails = 0;
  for (const rate of cfg.steps) {
    const r = await run(rate, cfg.stepSeconds, true);
    r.held = judge(r);
    process.stdout.write(JSON.stringify(r) + "\n");
    // consecutive failures end the ramp: one alone may be another job's burst
    fails = r.held ? 0 : fails + 1;
    if (fails >= cfg.maxFails) break;
    await pause(r.held);
  }
  // Fixed points measured whatever the ramp reached (the targets name 1,000 msg/s).
  for (const rate of cfg.fixed || []) {
    await pause(false);
    const r = await run(rate, cfg.stepSeconds, true);
    r.held = judge(r);
    r.fixed = true;
    process.stdout.write(JSON.stringify(r) + "\n");
  }
  if (cfg.overload) await overload(cfg.overload);
  for (const s of sockets) s.close();
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + "\n");
  process.exit(1);
});
