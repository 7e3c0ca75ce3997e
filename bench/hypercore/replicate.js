'use strict'
// The same-run reference of custodia-bench's replication figure: Hypercore
// appends N entries of SIZE bytes to a core in this process, then a second
// process opens a clone of the core and replicates every entry from this
// one over TCP on 127.0.0.1 (Noise-encrypted, each block checked against
// the signed Merkle tree, as Hypercore always does). Prints one JSON line.
//
//   node replicate.js ENTRIES [SIZE]
//
// The reader's time runs from just before it opens its core to the moment
// it holds all N entries contiguously, the way custodia-bench times a
// fresh node from its start to holding the origin's chain head. Hypercore
// does not fsync its storage per batch; the figure says so.

const { spawn } = require('child_process')
const crypto = require('crypto')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')
const Hypercore = require('hypercore')

const BATCH = 1000

function usage () {
  console.error('usage: node replicate.js ENTRIES [SIZE]')
  process.exit(2)
}

function positive (s) {
  const n = Number(s)
  if (!Number.isSafeInteger(n) || n < 1) usage()
  return n
}

async function writer (entries, size) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custodia-hypercore-'))
  const core = new Hypercore(path.join(dir, 'writer'))
  await core.ready()
  const seed = crypto.randomBytes(size)
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < entries; i += BATCH) {
    const blocks = []
    for (let k = i; k < Math.min(entries, i + BATCH); k++) {
      const b = Buffer.from(seed)
      b.writeUInt32BE(k, 0)
      blocks.push(b)
    }
    await core.append(blocks)
  }
  const appendSecs = Number(process.hrtime.bigint() - t0) / 1e9

  const sockets = new Set()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    const stream = core.replicate(false)
    stream.on('error', () => {})
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    stream.pipe(socket).pipe(stream)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = server.address().port

  const child = spawn(
    process.execPath,
    [__filename, '--reader', core.key.toString('hex'), String(port), String(entries), path.join(dir, 'reader')],
    { stdio: ['ignore', 'pipe', 'inherit'] }
  )
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  const code = await new Promise((resolve) => child.on('close', resolve))
  for (const s of sockets) s.destroy()
  server.close()
  await core.close()
  fs.rmSync(dir, { recursive: true, force: true })
  if (code !== 0) {
    console.error(`hypercore reader exited with ${code}`)
    process.exit(1)
  }
  const reader = JSON.parse(out)
  console.log(JSON.stringify({
    hypercore: require('hypercore/package.json').version,
    node: process.version,
    entries,
    entry_bytes: size,
    append_per_s: entries / appendSecs,
    replicate_secs: reader.secs,
    replicate_per_s: entries / reader.secs
  }))
}

async function reader (keyHex, port, entries, dir) {
  const t0 = process.hrtime.bigint()
  const core = new Hypercore(dir, Buffer.from(keyHex, 'hex'))
  await core.ready()
  const socket = net.connect(port, '127.0.0.1')
  const stream = core.replicate(true)
  stream.on('error', () => {})
  socket.on('error', () => {})
  stream.pipe(socket).pipe(stream)
  await core.download({ start: 0, end: entries }).done()
  if (core.contiguousLength < entries) {
    console.error(`reader holds ${core.contiguousLength} of ${entries} entries`)
    process.exit(1)
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  socket.destroy()
  await core.close()
  console.log(JSON.stringify({ secs }))
}

const args = process.argv.slice(2)
const main = args[0] === '--reader'
  ? reader(args[1], Number(args[2]), positive(args[3]), args[4])
  : writer(positive(args[0] || usage()), args[1] === undefined ? 200 : positive(args[1]))
main.catch((e) => {
  console.error(e && e.stack ? e.stack : String(e))
  process.exit(1)
})
