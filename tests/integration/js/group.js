'use strict'
// A kafkajs consumer group for Sediment's integration tests (driven by test_kafkajs.py).
//
//   node group.js <bootstrap> <topic> <group> <expected-count> [members=2] [timeout-ms=60000]
//
// Runs <members> consumers of <group> in this process. Auto-commit is off: after
// processing each batch a member commits the next offset of that batch before it
// returns, so every record must be delivered to the group exactly once. The script
// stops when <expected-count> distinct records were delivered and the members' latest
// assignments split the topic's partitions without overlap, then leaves the group
// and prints one JSON summary on stdout (logs go to stderr). Exit status 0 when it
// stopped that way, 1 on a timeout or an error.

const { Kafka, logLevel } = require('kafkajs')

const LEVELS = { 1: 'ERROR', 2: 'WARN', 4: 'INFO', 5: 'DEBUG' }

const [bootstrap, topic, groupId, expectedArg, membersArg = '2', timeoutArg = '60000'] = process.argv.slice(2)
if (!bootstrap || !topic || !groupId || !expectedArg) {
  process.stderr.write('usage: node group.js <bootstrap> <topic> <group> <expected-count> [members] [timeout-ms]\n')
  process.exit(2)
}
const expected = Number(expectedArg)
const memberCount = Number(membersArg)
const timeoutMs = Number(timeoutArg)

const logToStderr = () => ({ namespace, level, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`${LEVELS[level] || level} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

const kafka = new Kafka({
  clientId: 'sediment-it-kafkajs',
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
  logCreator: logToStderr,
  retry: { retries: 8, initialRetryTime: 100 },
})

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main () {
  const started = Date.now()
  const admin = kafka.admin()
  await admin.connect()
  const meta = await admin.fetchTopicMetadata({ topics: [topic] })
  const partitionCount = meta.topics[0].partitions.length
  await admin.disconnect()

  const deliveries = new Map() // "partition:offset" -> [member names]
  const errors = []
  const commitErrors = []
  const members = []

  for (let i = 0; i < memberCount; i++) {
    const info = { name: `js${i}`, memberId: null, assignment: [], joins: 0, protocol: null, consumed: 0, commits: 0 }
    const consumer = kafka.consumer({
      groupId,
      sessionTimeout: 10000,
      rebalanceTimeout: 20000,
      heartbeatInterval: 250,
      maxWaitTimeInMs: 200,
      retry: { retries: 8, initialRetryTime: 100 },
    })
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      info.memberId = payload.memberId
      info.assignment = (payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
      info.protocol = payload.groupProtocol
      info.joins += 1
    })
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      errors.push(`${info.name} crashed: ${payload.error && payload.error.message} (restart: ${payload.restart})`)
    })
    members.push({ info, consumer })
  }

  await Promise.all(members.map(async ({ info, consumer }) => {
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch, isStale }) => {
        if (batch.messages.length === 0 || isStale()) return
        const offsets = batch.messages.map((m) => m.offset)
        const next = (BigInt(offsets[offsets.length - 1]) + 1n).toString()
        try {
          await consumer.commitOffsets([{ topic, partition: batch.partition, offset: next }])
          info.commits += 1
        } catch (e) {
          commitErrors.push(`${info.name} p${batch.partition} -> ${next}: ${e.type || e.name}: ${e.message}`)
          throw e
        }
        for (const o of offsets) {
          const key = `${batch.partition}:${o}`
          const who = deliveries.get(key) || []
          who.push(info.name)
          deliveries.set(key, who)
          info.consumed += 1
        }
      },
    })
  }))

  const settled = () => {
    if (deliveries.size < expected) return false
    const seen = new Set()
    for (const { info } of members) {
      if (info.assignment.length === 0 && memberCount <= partitionCount) return false
      for (const p of info.assignment) {
        if (seen.has(p)) return false
        seen.add(p)
      }
    }
    return seen.size === partitionCount
  }

  let timedOut = false
  while (!settled()) {
    if (Date.now() - started > timeoutMs) { timedOut = true; break }
    if (errors.length > 0) break
    await sleep(100)
  }
  await sleep(500) // a late duplicate would show up here
  await Promise.all(members.map(({ consumer }) => consumer.disconnect()))

  const delivered = {}
  const duplicates = []
  for (const [key, who] of deliveries) {
    const [p, o] = key.split(':')
    ;(delivered[p] = delivered[p] || []).push(Number(o))
    if (who.length > 1) duplicates.push({ record: key, members: who })
  }
  for (const p of Object.keys(delivered)) delivered[p].sort((a, b) => a - b)
  const summary = {
    expected,
    distinct: deliveries.size,
    deliveries: [...deliveries.values()].reduce((n, who) => n + who.length, 0),
    duplicates: duplicates.slice(0, 20),
    duplicateCount: duplicates.length,
    delivered,
    partitionCount,
    members: members.map(({ info }) => info),
    commitErrors,
    errors,
    timedOut,
    elapsedMs: Date.now() - started,
  }
  process.stdout.write(JSON.stringify(summary) + '\n')
  return timedOut || errors.length > 0 ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stdout.write(JSON.stringify({ fatal: `${e.name}: ${e.message}` }) + '\n')
    process.exit(1)
  },
)
