// What the load generators share: a process's CPU and memory from /proc, percentiles,
// and a call that waits for its ack.
const fs = require("fs");

const TICK = 100; // clock ticks per second in /proc/PID/stat

function cpuTicks(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch (e) {
    return NaN;
  }
}

function rssKib(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch (e) {
    return null;
  }
}

// The p-th percentile of an ascending array, or null when it is empty.
function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function call(s, event, data) {
  return new Promise((resolve, reject) => {
    s.timeout(20000).emit(event, data, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

module.exports = { TICK, cpuTicks, rssKib, pct, call };
