// BullMQ side of scripts/bench-peers: runs each workload against the redis
// on --port and prints one JSON line per figure on stdout (progress on stderr).
// Usage: node bullmq.mjs --port P --durability "redis 7.0.15, no persistence" [--quick]
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, durability: { type: 'string' }, quick: { type: 'boolean' } },
});
const quick = Boolean(args.quick);
const N = quick ? 1_000 : 10_000; // jobs per throughput workload
const W = quick ? 10_000 : 100_000; // waiting jobs for the memory figure
const S = quick ? 10_000 : 1_000_000; // stored jobs for list/stats/metrics
const LATENCY_SECS = quick ? 1 : 5;
const RATE = 1_000; // jobs/s for the latency workload
const CONCURRENCY = 50;
const TEXT = 'the quick brown fox jumps over the lazy dog and then the dog sleeps '.repeat(13);

const connection = { host: '127.0.0.1', port: Number(args.port), maxRetriesPerRequest: null };
const version = createRequire(import.meta.url)('bullmq/package.json').version;
const redis = new IORedis(connection);

function emit(workload, value, unit, note) {
  const line = { system: 'BullMQ', version, durability: args.durability, workload, value, unit };
  if (note) line.note = note;
  console.log(JSON.stringify(line));
}
const log = (msg) => console.error(`bullmq: ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Nearest-rank percentile (p99 of 20 samples is the slowest one).
const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil((p / 100) * xs.length) - 1)];
const round = (x, digits = 1) => Number(x.toFixed(digits));

function wordcount(text) {
  const counts = new Map();
  for (const w of text.split(/[^A-Za-z0-9]+/)) {
    if (w) counts.set(w.toLowerCase(), (counts.get(w.toLowerCase()) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 3);
}

// A fresh redis and queue per workload: nothing left from the one before.
let queueNo = 0;
async function freshQueue() {
  await redis.flushall();
  return new Queue(`bench${++queueNo}`, { connection });
}

// Resolves when `count` jobs have completed on the worker; `done.at` is the time of the last.
function startWorker(queue, processor, count) {
  const worker = new Worker(queue.name, processor, { connection, concurrency: CONCURRENCY });
  let completed = 0;
  const done = new Promise((resolve, reject) => {
    worker.on('completed', () => { if (++completed === count) { done.at = performance.now(); resolve(); } });
    worker.on('failed', (_job, err) => reject(err));
  });
  return { worker, done };
}

// 50 producer calls in flight, each awaiting its own add.
async function addOneByOne(queue, name, count, data) {
  let next = 0;
  const producer = async () => { while (next < count) { next++; await queue.add(name, data()); } };
  await Promise.all(Array.from({ length: CONCURRENCY }, producer));
}

async function addInChunks(queue, name, count, data) {
  for (let i = 0; i < count; i += 1_000) {
    const n = Math.min(1_000, count - i);
    await queue.addBulk(Array.from({ length: n }, (_, k) => ({ name, data: data(i + k) })));
  }
}

async function throughput(workload, processor, enqueue, note) {
  const queue = await freshQueue();
  const { worker, done } = startWorker(queue, processor, N);
  await worker.waitUntilReady();
  const start = performance.now();
  await enqueue(queue);
  await done;
  await worker.close();
  await queue.close();
  if (workload) emit(workload, round(N / ((done.at - start) / 1000)), 'jobs/s', note);
}

async function latency() {
  const queue = await freshQueue();
  const total = RATE * LATENCY_SECS;
  const samples = [];
  const { worker, done } = startWorker(queue, async (job) => { samples.push(performance.now() - job.data.t); }, total);
  await worker.waitUntilReady();
  // Paced: every ~1 ms, add the jobs now due on a 1,000/s schedule (adds not awaited).
  const start = performance.now();
  const adds = [];
  for (let sent = 0; sent < total; await sleep(1)) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * RATE) / 1000) + 1);
    for (; sent < due; sent++) adds.push(queue.add('latency', { t: performance.now() }));
  }
  const rate = total / ((performance.now() - start) / 1000);
  await Promise.all(adds);
  await done;
  await worker.close();
  await queue.close();
  const note = `${total} jobs paced at ${Math.round(rate)}/s; worker in the producer's process, one clock`;
  emit('latency_p50', round(percentile(samples, 50), 2), 'ms', note);
  emit('latency_p99', round(percentile(samples, 99), 2), 'ms', note);
}

async function usedMemory() {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))[1]);
}

async function memoryPerWaitingJob() {
  const queue = await freshQueue();
  await queue.waitUntilReady();
  const before = await usedMemory();
  await addInChunks(queue, 'noop', W, (i) => ({ i }));
  const after = await usedMemory();
  await queue.close();
  emit('memory_per_waiting_job', Math.round((after - before) / W), 'bytes',
    `${W} waiting jobs with data {i}, no worker; redis used_memory after minus before`);
}

async function queries() {
  const queue = await freshQueue();
  const start = performance.now();
  await addInChunks(queue, 'noop', S, (i) => ({ i }));
  log(`stored ${S} jobs in ${((performance.now() - start) / 1000).toFixed(1)} s`);
  const calls = {
    list_p99: [() => queue.getJobs(['waiting'], 0, 19), `page of 20 of ${S} waiting jobs: getJobs(['waiting'], 0, 19)`],
    stats_p99: [() => queue.getJobCounts(), `getJobCounts() with ${S} jobs stored`],
    metrics_p99: [() => queue.getMetrics('completed'),
      `getMetrics('completed') with ${S} jobs stored; BullMQ keeps per-minute counters, so its cost does not grow with jobs`],
  };
  for (const [workload, [call, note]] of Object.entries(calls)) {
    await call(); // loads its Lua scripts; not timed
    const times = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      await call();
      times.push(performance.now() - t);
    }
    emit(workload, round(percentile(times, 99), 2), 'ms', `${note}; p99 of 20 calls`);
  }
  await queue.close();
}

const noop = async () => {};
try {
  log(`version ${version}, ${args.durability}, ${quick ? 'quick' : 'full'}`);
  // Warm-up round (JIT, connections), not reported.
  await throughput(null, noop, (q) => addOneByOne(q, 'noop', N, () => ({})));
  await throughput('noop_one_by_one', noop, (q) => addOneByOne(q, 'noop', N, () => ({})),
    `${N} jobs, queue.add with 50 calls in flight, worker concurrency 50, completed jobs kept`);
  await throughput('noop_bulk', noop, (q) => addInChunks(q, 'noop', N, () => ({})),
    `${N} jobs, queue.addBulk in chunks of 1,000, worker concurrency 50`);
  await latency();
  await throughput('wordcount', async (job) => wordcount(job.data.text),
    (q) => addOneByOne(q, 'wordcount', N, () => ({ text: TEXT })),
    `${N} jobs of ${TEXT.length} bytes, top 3 words returned; queue.add with 50 in flight, concurrency 50`);
  await memoryPerWaitingJob();
  await queries();
  await redis.flushall();
} finally {
  await redis.quit();
}
