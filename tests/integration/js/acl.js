'use strict'
// kafkajs against a broker with ACLs, for Sediment's integration tests (driven by test_acls.py).
//
//   node acl.js '<json options>'
//
// Options: {
//   "bootstrap": "127.0.0.1:9093",
//   "mode": "produce" | "consume" | "topics",
//   "sasl": null | { "mechanism": "scram-sha-512", "username": "...", "password": "..." },
//   "topic": "...", "count": 5, "groupId": "...",   (produce, consume)
//   "timeoutMs": 15000
// }
// produce: sends <count> records "v<i>" to partition 0 (acks -1). Summary {ok: true, produced}
//   or {ok: false, error} where error is {name, type, code, message} of the error kafkajs
//   threw (and of its cause, for a retry wrapper).
// consume: a consumer group reads the topic from the beginning until <count> records arrived,
//   an error was reported or the time is up. Summary {records, errors: [{name, type, code,
//   message}], timedOut}.
// topics: an admin client's fetchTopicMetadata() of every topic. Summary {ok, topics} or
//   {ok: false, error}.
// Every summary also has loggedErrorTypes: the broker error types kafkajs logged (at any level).
// Refusals are answers the test checks: the exit status is 0 either way.

const { Kafka, Partitioners, logLevel } = require('kafkajs')

const LEVELS = { 1: 'ERROR', 2: 'WARN', 4: 'INFO', 5: 'DEBUG' }

const opts = JSON.parse(process.argv[2] || '{}')
if (!opts.bootstrap || !opts.mode) {
  process.stderr.write("usage: node acl.js '{\"bootstrap\": ..., \"mode\": \"produce\"|\"consume\"|\"topics\", ...}'\n")
  process.exit(2)
}
const timeoutMs = Number(opts.timeoutMs || 15000)
const loggedErrorTypes = []

const kafka = new Kafka({
  clientId: 'sediment-it-kafkajs-acl',
  brokers: [opts.bootstrap],
  sasl: opts.sasl || undefined,
  connectionTimeout: 5000,
  authenticationTimeout: 5000,
  logLevel: logLevel.DEBUG,
  logCreator: () => ({ namespace, level, log }) => {
    const { message, ...extra } = log
    // kafkajs hides some broker errors behind its own (a refused FindCoordinator becomes
    // KafkaJSGroupCoordinatorNotFound) and only logs them, at debug level: keep their types
    if (extra.error && extra.error.type && !loggedErrorTypes.includes(extra.error.type)) loggedErrorTypes.push(extra.error.type)
    if (level <= logLevel.WARN) process.stderr.write(`${LEVELS[level] || level} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
  },
  retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 500 },
})

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function describe (e) {
  if (!e) return null
  const out = { name: e.name, type: e.type, code: e.code, message: e.message }
  const cause = e.originalError || e.cause
  if (cause && cause !== e) out.cause = describe(cause)
  return out
}

async function produce () {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: true })
  await producer.connect()
  const messages = []
  for (let i = 0; i < Number(opts.count || 1); i++) messages.push({ value: `v${i}`, partition: 0 })
  try {
    const res = await producer.send({ topic: opts.topic, acks: -1, messages })
    return { ok: true, produced: res.map((r) => ({ errorCode: r.errorCode, baseOffset: Number(r.baseOffset) })) }
  } catch (e) {
    return { ok: false, error: describe(e) }
  } finally {
    try { await producer.disconnect() } catch (_) {}
  }
}

async function consume () {
  const count = Number(opts.count || 1)
  const consumer = kafka.consumer({ groupId: opts.groupId, sessionTimeout: 10000, rebalanceTimeout: 10000, heartbeatInterval: 500, maxWaitTimeInMs: 200, retry: { retries: 0 } })
  const records = []
  const errors = []
  consumer.on(consumer.events.CRASH, ({ payload }) => { errors.push(describe(payload.error)) })
  try {
    await consumer.connect()
    await consumer.subscribe({ topics: [opts.topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        records.push({ partition, offset: Number(message.offset), value: message.value && message.value.toString() })
      },
    })
  } catch (e) {
    errors.push(describe(e))
  }
  const deadline = Date.now() + timeoutMs
  while (records.length < count && errors.length === 0 && Date.now() < deadline) await sleep(50)
  try { await consumer.disconnect() } catch (_) {}
  return { records, errors, timedOut: records.length < count && errors.length === 0 }
}

async function topics () {
  const admin = kafka.admin()
  try {
    await admin.connect()
    const md = await admin.fetchTopicMetadata()
    return { ok: true, topics: md.topics.map((t) => t.name) }
  } catch (e) {
    return { ok: false, error: describe(e) }
  } finally {
    try { await admin.disconnect() } catch (_) {}
  }
}

async function main () {
  if (opts.mode === 'produce') return produce()
  if (opts.mode === 'consume') return consume()
  if (opts.mode === 'topics') return topics()
  throw new Error(`unknown mode ${opts.mode}`)
}

main().then(
  (summary) => {
    process.stdout.write(JSON.stringify({ ...summary, loggedErrorTypes }) + '\n')
    process.exit(0)
  },
  (e) => {
    process.stdout.write(JSON.stringify({ fatal: `${e.name}: ${e.message}` }) + '\n')
    process.exit(1)
  },
)
