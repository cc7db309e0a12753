// Load generator for several nodes: pairs of users, each pair in its own two-member
// room, each user on the node given by its url. The first of each pair sends
// createMessage at a fixed total rate (or at each of several rising ones); the delivery of "message" to the other is timed,
// by the pair's label ("same" node or "cross" node). Idle pairs join their rooms and
// send nothing. CPU ticks of the given pids are read around the measured window.
// One JSON line on stdout per rate. Run: node scaleout.js CONFIG.json
const fs = require("fs");
const { io } = require("socket.io-client");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const now = () => performance.now();
const common = require("./common");
const { cpuTicks, call } = common;

// A percentile in ms, to the microsecond.
function pct(sorted, p) {
  const v = common.pct(sorted, p);
  return v === null ? null : Math.round(v * 1000) / 1000;
}

function connect(user) {
  const s = io(user.url, {
    transports: ["websocket"], reconnection: false, timeout: 20000,
    query: { userId: user.id }, auth: { accessToken: user.token },
  });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(new Error(`connect: ${e.message}`)));
  });
}

async function pairUp(list) {
  const out = [];
  for (let i = 0; i < list.length; i += 20) {
    out.push(...(await Promise.all(list.slice(i, i + 20).map(async (p) => {
      const [a, b] = await Promise.all([connect(p.from), connect(p.to)]);
      const r = await call(a, "joinRoom", { otherUserId: p.to.id });
      await call(b, "joinRoom", { chatHeaderId: r.chatHeaderId });
      return { a, b, chatId: r.chatHeaderId, label: p.label };
    }))));
  }
  return out;
}

let measuring = null;
const sentAt = new Map();

async function main() {
  const pairs = await pairUp(cfg.pairs);
  const idle = await pairUp(cfg.idle || []);
  for (const pair of pairs) {
    pair.b.on("message", (d) => {
      const text = d && d.chatMessage && d.chatMessage.message;
      const seq = Number(text.slice(text.indexOf("#") + 1));
      const t0 = sentAt.get(seq);
      sentAt.delete(seq);
      if (t0 === undefined || !measuring) return;
      measuring.deliv[pair.label].push(now() - t0);
      measuring.delivered++;
    });
  }
  let seq = 0;
  let next = 0;
  async function run(rate, seconds, record) {
    const labels = Object.fromEntries(pairs.map((p) => [p.label, []]));
    const st = { sent: 0, acked: 0, errors: 0, delivered: 0, deliv: labels };
    measuring = record ? st : null;
    const ticks0 = Object.fromEntries(Object.entries(cfg.pids).map(([k, pid]) => [k, cpuTicks(pid)]));
    const t0 = now();
    await new Promise((resolve) => {
      const tick = () => {
        const elapsed = (now() - t0) / 1000;
        if (elapsed >= seconds) return resolve();
        const due = Math.floor(rate * elapsed);
        while (st.sent < due) {
          const pair = pairs[next++ % pairs.length];
          const n = ++seq;
          sentAt.set(n, now());
          st.sent++;
          pair.a.emit("createMessage", { message: `bench #${n}`, chatHeaderId: pair.chatId, messageType: 0 },
            (reply) => { if (reply && reply.chatMessage) st.acked++; else st.errors++; });
        }
        setTimeout(tick, 1);
      };
      tick();
    });
    const sendWall = (now() - t0) / 1000;
    const deadline = now() + cfg.grace * 1000;
    while (now() < deadline && (st.acked + st.errors < st.sent || (record && st.delivered < st.sent))) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const ticks = Object.fromEntries(Object.entries(cfg.pids).map(([k, pid]) => [k, cpuTicks(pid) - ticks0[k]]));
    measuring = null;
    const latency = {};
    for (const [label, xs] of Object.entries(st.deliv)) {
      xs.sort((x, y) => x - y);
      latency[label] = { n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) };
    }
    return { rate, seconds, sent: st.sent, acked: st.acked, errors: st.errors,
      delivered: st.delivered, achieved: Math.round(st.sent / sendWall), ticks, latency };
  }
  const rates = cfg.rates || [cfg.rate];
  await run(rates[0], cfg.warmup, false);
  let fails = 0;
  for (const rate of rates) {
    await new Promise((r) => setTimeout(r, 500));
    const result = await run(rate, cfg.seconds, true);
    const worst = Math.max(...Object.values(result.latency).map((l) => l.p99 === null ? Infinity : l.p99));
    result.held = result.delivered === result.sent && result.acked === result.sent &&
      result.errors === 0 && worst <= cfg.p99Limit && result.achieved >= 0.95 * rate;
    process.stdout.write(JSON.stringify({ ...result, idle: idle.length }) + "\n");
    // Two in a row not held end a ramp: one alone may be another job's burst.
    fails = result.held ? 0 : fails + 1;
    if (fails >= 2) break;
  }
  for (const p of [...pairs, ...idle]) { p.a.close(); p.b.close(); }
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + "\n");
  process.exit(1);
});
