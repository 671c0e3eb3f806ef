import CCausal
import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An event loop (libuv, in C) running on a thread of its own.
///
/// Loop state (inboxes, connections) is touched only on the loop thread; other threads
/// reach it by handing closures to `execute(_:)` or `run(_:)`, which run there in call
/// order. The loop stops on `shutdown()` or when the last reference goes away; stopping
/// first runs every closure already accepted, then closes everything still open on the
/// loop (each `CausalInbox` on it closes and calls back).
///
/// Thread safety: every member may be used from any thread; `shutdown()` must not be
/// called on the loop thread itself (it waits for that thread to end).
public final class CausalLoop: Sendable {
    /// The C loop; valid until `shutdown` has set `Gate.closed` and drained the gate.
    let handle: LoopHandle
    /// Entered around every call into C that may race with `shutdown`.
    let gate = Gate()
    /// The loop thread's identity, so `isOnLoopThread` needs no C memory.
    private let thread: ThreadID
    /// Set once the loop thread has ended.
    private let finished = Atomic<Bool>(false)
    /// Serialises `shutdown` callers: later ones wait until the first has stopped the loop.
    private let stopping = Mutex<Bool>(false)

    /// Starts a loop on a new thread.
    ///
    /// - Parameter callCapacity: How many `execute` calls may wait at once before
    ///   `execute` throws `.full` (0 picks 1024).
    /// - Throws: `.memory` or `.system` when the loop or its thread cannot be set up.
    public init(callCapacity: Int = 1024) throws(CausalDeliveryError) {
        precondition(callCapacity >= 0, "negative call capacity \(callCapacity)")
        var loop: OpaquePointer?
        let rc = cc_loop_start(callCapacity, &loop)
        guard Int(rc) == CC_OK, let loop else { throw CausalDeliveryError(code: rc) }
        handle = LoopHandle(pointer: loop)
        thread = ThreadID.loopThread(of: loop)
    }

    deinit {
        guard !gate.isSet(Gate.closed) else { return }
        gate.set(Gate.closed)
        if thread.isCurrent {
            // The last reference went away on the loop thread (inside a closure it ran),
            // which cannot wait for itself to end: a short-lived thread stops the loop.
            ThreadID.detach(stopping: handle.pointer)
        } else {
            _ = cc_loop_stop(handle.pointer)
        }
    }

    /// Stops the loop: runs the closures already accepted, closes everything still open on
    /// the loop, waits for their close callbacks and for the thread to end. Later calls
    /// (and calls from other threads meanwhile) wait for that and then return.
    ///
    /// Requires a thread other than the loop's own; on the loop thread it is allowed only
    /// inside a closure that the stop itself is running, where it returns at once.
    public func shutdown() {
        if thread.isCurrent && !finished.load(ordering: .acquiring) {
            precondition(gate.isSet(Gate.closed), "shutdown() on the loop thread would wait for itself")
            return
        }
        stopping.withLock { stopped in
            guard !stopped else { return }
            gate.set(Gate.closed)
            gate.drain()
            // CC_ESYS means a handle stayed open and C leaked the loop rather than free
            // live memory; nothing is left to do about it here.
            _ = cc_loop_stop(handle.pointer)
            finished.store(true, ordering: .releasing)
            stopped = true
        }
    }

    /// True when called on the loop's thread (false once the loop has stopped).
    public var isOnLoopThread: Bool {
        thread.isCurrent && !finished.load(ordering: .acquiring)
    }

    /// Runs `body` on the loop thread soon, after the closures handed over before it.
    ///
    /// Any thread, including the loop thread (then `body` runs later, not inside this call).
    /// Allocates one box for the closure.
    ///
    /// - Throws: `.closed` after `shutdown()`, `.full` when `callCapacity` calls wait
    ///   already; `body` is then never run.
    public func execute(_ body: @escaping @Sendable () -> Void) throws(CausalDeliveryError) {
        let box = Unmanaged.passRetained(ClosureBox(body)).toOpaque()
        let rc = call(
            { ctx in Unmanaged<ClosureBox>.fromOpaque(ctx!).takeRetainedValue().body() }, box)
        guard Int(rc) == CC_OK else {
            Unmanaged<ClosureBox>.fromOpaque(box).release()
            throw CausalDeliveryError(code: rc)
        }
    }

    /// Runs `body` on the loop thread and returns its result to the caller.
    ///
    /// From any task. `body` runs even if the calling task is cancelled meanwhile; it must
    /// not block the loop thread.
    ///
    /// - Throws: `.closed` after `shutdown()`, `.full` when `callCapacity` calls wait.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async throws(CausalDeliveryError) -> T {
        let result: Result<T, CausalDeliveryError> = await withCheckedContinuation { continuation in
            do throws(CausalDeliveryError) {
                try execute { continuation.resume(returning: .success(body())) }
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    /// Calls `fn(ctx)` on the loop thread; returns a C code. On an error `fn` is never called.
    /// No allocation: the path `CausalInbox` uses.
    func call(_ fn: @escaping cc_loop_fn, _ ctx: UnsafeMutableRawPointer?) -> Int32 {
        guard gate.enter(unless: Gate.closed) else { return Int32(CC_ECLOSED) }
        defer { gate.leave() }
        return cc_loop_call(handle.pointer, fn, ctx)
    }
}

/// The C loop pointer, shared between threads under the rules of `cc_loop.h`.
struct LoopHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// A closure on its way to the loop thread.
private final class ClosureBox {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// A thread's identity, compared without touching the thread.
struct ThreadID: @unchecked Sendable {
    let id: pthread_t

    /// True on the thread this names.
    var isCurrent: Bool { pthread_equal(id, pthread_self()) != 0 }

    /// The identity of `loop`'s thread, asked of the loop itself (waits for one call).
    static func loopThread(of loop: OpaquePointer) -> ThreadID {
        final class Probe: @unchecked Sendable {
            var id = pthread_self()
            let done = DispatchSemaphore(value: 0)
        }
        let probe = Probe()
        let ctx = Unmanaged.passRetained(probe).toOpaque()
        let rc = cc_loop_call(
            loop,
            { ctx in
                let probe = Unmanaged<Probe>.fromOpaque(ctx!).takeRetainedValue()
                probe.id = pthread_self()
                probe.done.signal()
            }, ctx)
        // A fresh loop has every call slot free and is not stopping.
        precondition(Int(rc) == CC_OK, "a new loop refused a call: \(rc)")
        probe.done.wait()
        return ThreadID(id: probe.id)
    }

    /// Stops `loop` from a new detached thread.
    static func detach(stopping loop: OpaquePointer) {
        let arg = UnsafeMutableRawPointer(loop)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        #if canImport(Darwin)
            var thread: pthread_t?
            let rc = pthread_create(
                &thread, &attributes,
                { arg in
                    _ = cc_loop_stop(OpaquePointer(arg))
                    return nil
                }, arg)
        #else
            var thread = pthread_t()
            let rc = pthread_create(
                &thread, &attributes,
                { arg in
                    _ = cc_loop_stop(OpaquePointer(arg))
                    return nil
                }, arg)
        #endif
        // Without a thread the loop cannot be stopped from here: it keeps running (a leak),
        // which is better than a deadlock.
        _ = rc
    }
}
