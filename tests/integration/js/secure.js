'use strict'
// kafkajs over TLS and/or SASL for Sediment's integration tests (driven by test_security.py).
//
//   node secure.js '<json options>'
//
// Options: {
//   "bootstrap": "127.0.0.1:9093",
//   "mode": "roundtrip" | "connect",
//   "ssl": null | { "ca": "/path/ca.pem", "cert": "/path/client.pem", "key": "/path/client.key" },
//   "sasl": null | { "mechanism": "plain" | "scram-sha-256" | "scram-sha-512",
//                    "username": "...", "password": "..." },
//   "topic": "...", "count": 20, "groupId": "...",     (roundtrip)
//   "timeoutMs": 30000
// }
// roundtrip: produces <count> records "<topic>-v<i>" (key "k<i>", acks -1) with a producer,
//   then reads them back with a consumer group from the beginning. Summary: the produce
//   answers and the records read ({partition, offset, key, value}).
// connect: an admin client connects and describes the cluster. Summary: {ok: true, brokers,
//   controller} or {ok: false, errorName, errorMessage} (a refused connection is an answer
//   the test checks, so the exit status is 0 either way).
// Prints one JSON summary line on stdout; logs go to stderr. Exit 1 (with {fatal}) when a
// roundtrip fails.

const fs = require('fs')
const { Kafka, Partitioners, logLevel } = require('kafkajs')

const LEVELS = { 1: 'ERROR', 2: 'WARN', 4: 'INFO', 5: 'DEBUG' }

const opts = JSON.parse(process.argv[2] || '{}')
if (!opts.bootstrap || !opts.mode) {
  process.stderr.write("usage: node secure.js '{\"bootstrap\": ..., \"mode\": \"roundtrip\"|\"connect\", ...}'\n")
  process.exit(2)
}
const timeoutMs = Number(opts.timeoutMs || 30000)

function sslOptions (s) {
  if (!s) return undefined
  const o = { rejectUnauthorized: true }
  if (s.ca) o.ca = [fs.readFileSync(s.ca, 'utf8')]
  if (s.cert) o.cert = fs.readFileSync(s.cert, 'utf8')
  if (s.key) o.key = fs.readFileSync(s.key, 'utf8')
  return o
}

const kafka = new Kafka({
  clientId: 'sediment-it-kafkajs-secure',
  brokers: [opts.bootstrap],
  ssl: sslOptions(opts.ssl),
  sasl: opts.sasl || undefined,
  connectionTimeout: 5000,
  authenticationTimeout: 5000,
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, level, log }) => {
    const { message, ...extra } = log
    process.stderr.write(`${LEVELS[level] || level} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
  },
  retry: opts.mode === 'connect' ? { retries: 0 } : { retries: 8, initialRetryTime: 100 },
})

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function connect () {
  const admin = kafka.admin()
  try {
    await admin.connect()
    const cluster = await admin.describeCluster()
    await admin.disconnect()
    return { ok: true, brokers: cluster.brokers, controller: cluster.controller }
  } catch (e) {
    try { await admin.disconnect() } catch (_) {}
    return { ok: false, errorName: e.name, errorMessage: e.message }
  }
}

async function roundtrip () {
  const { topic, groupId } = opts
  const count = Number(opts.count || 20)
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  const messages = []
  for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `${topic}-v${i}`, partition: 0 })
  const res = await producer.send({ topic, acks: -1, messages })
  await producer.disconnect()
  const produced = res.map((r) => ({ partition: r.partition, errorCode: r.errorCode, baseOffset: Number(r.baseOffset) }))

  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, rebalanceTimeout: 10000, heartbeatInterval: 500, maxWaitTimeInMs: 200 })
  const records = []
  const errors = []
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    errors.push(`consumer crashed: ${payload.error && payload.error.message}`)
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      records.push({ partition, offset: Number(message.offset), key: message.key && message.key.toString(), value: message.value && message.value.toString() })
    },
  })
  const deadline = Date.now() + timeoutMs
  while (records.length < count && errors.length === 0 && Date.now() < deadline) await sleep(50)
  await consumer.disconnect()
  return { produced, records, errors, timedOut: records.length < count }
}

async function main () {
  if (opts.mode === 'connect') return connect()
  if (opts.mode === 'roundtrip') return roundtrip()
  throw new Error(`unknown mode ${opts.mode}`)
}

main().then(
  (summary) => {
    process.stdout.write(JSON.stringify(summary) + '\n')
    process.exit(0)
  },
  (e) => {
    process.stdout.write(JSON.stringify({ fatal: `${e.name}: ${e.message}` }) + '\n')
    process.exit(1)
  },
)
