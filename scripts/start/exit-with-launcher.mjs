// Preloaded (`node --import`) into every service the launcher starts. The services run in their own
// process group, so a Ctrl-C reaches only the launcher, which stops them in order; but if the launcher
// itself dies without that (SIGKILL, a crash), they would live on as orphans holding their ports. Once
// re-parented, a service sends itself SIGTERM: its usual graceful shutdown.
const launcher = process.ppid
const timer = setInterval(() => {
  if (process.ppid !== launcher) {
    clearInterval(timer)
    process.kill(process.pid, 'SIGTERM')
  }
}, 500)
timer.unref()
