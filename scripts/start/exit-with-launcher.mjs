import fs from 'node:fs'

// Preloaded (`node --import`) into every service the launcher starts. The services run in their own
// process group, so a Ctrl-C reaches only the launcher, which stops them in order; but if the launcher
// itself dies without that (SIGKILL, a crash), they would live on as orphans holding their ports. Once
// re-parented, a service sends itself SIGTERM: its usual graceful shutdown.
//
// Their stdout and stderr then lead nowhere: a write fails with EPIPE. Unhandled, that error deadlocks
// a process running under tsx's loader thread (measured: it never exits, even on a second SIGTERM).
// So a log line nobody can read any more is dropped: EPIPE on fd 1 or 2 counts as written, both for
// process.stdout/stderr and for pino's destination (sonic-boom writes to the fd with fs.write/writeSync).
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})
const isStdio = (fd) => fd === 1 || fd === 2
const writeSync = fs.writeSync
fs.writeSync = function (fd, buffer, ...rest) {
  try {
    return writeSync.call(this, fd, buffer, ...rest)
  } catch (error) {
    if (isStdio(fd) && error?.code === 'EPIPE')
      return typeof buffer === 'string' ? Buffer.byteLength(buffer) : buffer.length
    throw error
  }
}
const write = fs.write
fs.write = function (fd, buffer, ...rest) {
  const callback = rest.at(-1)
  if (isStdio(fd) && typeof callback === 'function') {
    rest[rest.length - 1] = (error, written, ...more) =>
      error?.code === 'EPIPE'
        ? callback(null, typeof buffer === 'string' ? Buffer.byteLength(buffer) : buffer.length, ...more)
        : callback(error, written, ...more)
  }
  return write.call(this, fd, buffer, ...rest)
}

const launcher = process.ppid
const timer = setInterval(() => {
  if (process.ppid !== launcher) {
    clearInterval(timer)
    process.kill(process.pid, 'SIGTERM')
  }
}, 500)
timer.unref()
