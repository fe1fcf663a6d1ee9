'use strict'
// An idempotent kafkajs producer for Sediment's integration tests (driven by test_kafkajs.py).
//
//   node produce.js <bootstrap> <topic> <count> [partitions=3] [per-send=50]
//
// Sends records "kjs-<i>" (key "k<i % 10>") to partition i % partitions with
// idempotent: true and acks -1, <per-send> records per send() call, one call after
// the other. Prints one JSON summary on stdout: for each send, the partition
// answers (partition, error code, base offset) and how many records went there.

const { Kafka, Partitioners, logLevel } = require('kafkajs')

const LEVELS = { 1: 'ERROR', 2: 'WARN', 4: 'INFO', 5: 'DEBUG' }

const [bootstrap, topic, countArg, partitionsArg = '3', perSendArg = '50'] = process.argv.slice(2)
if (!bootstrap || !topic || !countArg) {
  process.stderr.write('usage: node produce.js <bootstrap> <topic> <count> [partitions] [per-send]\n')
  process.exit(2)
}
const count = Number(countArg)
const partitions = Number(partitionsArg)
const perSend = Number(perSendArg)

const kafka = new Kafka({
  clientId: 'sediment-it-kafkajs-producer',
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, level, log }) => {
    const { message, ...extra } = log
    process.stderr.write(`${LEVELS[level] || level} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
  },
})

async function main () {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    // records carry explicit partitions; naming the partitioner silences kafkajs's v2 notice
    createPartitioner: Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  const sends = []
  for (let start = 0; start < count; start += perSend) {
    const messages = []
    for (let i = start; i < Math.min(count, start + perSend); i++) {
      messages.push({ key: `k${i % 10}`, value: `kjs-${String(i).padStart(5, '0')}`, partition: i % partitions })
    }
    const counts = {}
    for (const m of messages) counts[m.partition] = (counts[m.partition] || 0) + 1
    const res = await producer.send({ topic, acks: -1, messages })
    sends.push(res.map((r) => ({
      partition: r.partition,
      errorCode: r.errorCode,
      baseOffset: Number(r.baseOffset),
      count: counts[r.partition] || 0,
    })))
  }
  await producer.disconnect()
  process.stdout.write(JSON.stringify({ count, partitions, sends }) + '\n')
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stdout.write(JSON.stringify({ fatal: `${e.name}: ${e.message}` }) + '\n')
    process.exit(1)
  },
)
