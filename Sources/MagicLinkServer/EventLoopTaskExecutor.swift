import NIOCore

/// Runs a task's jobs on one NIO event loop, so a connection's task reads its lines, decodes,
/// encodes and writes replies on the thread that owns its channel: no hop to Swift's
/// cooperative pool and back for every request. Only non-blocking work may run here: the
/// dispatcher sends database calls to a thread pool, or suspends on the group commit.
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { job.runSynchronously(on: executor) }
    }
}
