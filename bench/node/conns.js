// Holds idle Socket.IO connections open: connects every user of its slice (a few in
// flight at a time), prints {"ready": n, "failed": m}, then waits to be killed.
// Run: node conns.js CONFIG.json
const fs = require("fs");
const { io } = require("socket.io-client");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const held = [];
let failed = 0, firstError = null;

function connect(user, i) {
  const query = cfg.mode === "product" ? { userId: user.id } : { room: `idle${i}` };
  const opts = { transports: ["websocket"], reconnection: false, query, timeout: 60000 };
  if (cfg.mode === "product") opts.auth = { accessToken: user.token };
  return new Promise((resolve) => {
    const s = io(cfg.url, opts);
    s.once("connect", () => { held.push(s); resolve(); });
    s.once("connect_error", (e) => { failed++; firstError = firstError || e.message; s.close(); resolve(); });
  });
}

async function main() {
  let next = 0;
  // Past the deadline, report what is held rather than run the benchmark long.
  const deadline = Date.now() + (cfg.deadlineSeconds || 600) * 1000;
  const worker = async () => {
    while (next < cfg.users.length && Date.now() < deadline) {
      const i = next++;
      await connect(cfg.users[i], i);
    }
  };
  const ticker = setInterval(() => process.stdout.write(JSON.stringify({ opened: held.length }) + "\n"), 2000);
  await Promise.all(Array.from({ length: cfg.concurrency || 64 }, worker));
  clearInterval(ticker);
  process.stdout.write(JSON.stringify({ ready: held.length, failed, firstError }) + "\n");
  setInterval(() => {
    const alive = held.filter((s) => s.connected).length;
    if (alive !== held.length) process.stdout.write(JSON.stringify({ alive }) + "\n");
  }, 5000);
}
main();
