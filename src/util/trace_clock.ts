/**
 * The clock of trace stamps (traceSample): monotonic within a process, and comparable between the processes of one
 * host, since each anchors performance.now() at its own start on the wall clock. Across hosts the stamps are only as
 * close as the hosts' clocks (NTP: tens of µs to ms), which is the order of a hop: a several-host breakdown is rough.
 */
export function traceNow(): number {
  return performance.timeOrigin + performance.now();
}
