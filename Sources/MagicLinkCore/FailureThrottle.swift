import Synchronization

/// Slows down guessing: after `limit.maximum` failed logins or session checks from one client IP
/// within `limit.window` seconds, that IP gets `rate_limited` for those ops until the oldest
/// failure leaves the window. Kept in memory (a restart forgets it): the check is on the hot path
/// of `session`, where a database query per request would cost more than it protects. At most
/// `capacity` IPs are tracked; beyond that the one whose last failure is oldest is dropped.
public final class FailureThrottle: Sendable {
    public let limit: RateLimit
    private let capacity: Int
    private let time: any TimeSource
    private let state = Mutex<[String: [Int64]]>([:])

    public init(limit: RateLimit, time: any TimeSource, capacity: Int = 100_000) {
        self.limit = limit
        self.time = time
        self.capacity = capacity
    }

    /// Seconds until `key` may try again, or nil when it may now.
    public func retryAfter(_ key: String) -> Int64? {
        let now = time.now()
        return state.withLock { table -> Int64? in
            guard var times = table[key] else { return nil }
            times.removeAll { $0 <= now - limit.window }
            table[key] = times.isEmpty ? nil : times
            guard times.count >= limit.maximum else { return nil }
            return max(1, times[times.count - limit.maximum] + limit.window - now)
        }
    }

    public func recordFailure(_ key: String) {
        let now = time.now()
        state.withLock { table in
            var times = table[key] ?? []
            times.removeAll { $0 <= now - limit.window }
            times.append(now)
            // Only the newest `maximum` matter for the decision.
            if times.count > limit.maximum { times.removeFirst(times.count - limit.maximum) }
            if table[key] == nil && table.count >= capacity, let oldest = table.min(by: { ($0.value.last ?? 0) < ($1.value.last ?? 0) })?.key {
                table[oldest] = nil
            }
            table[key] = times
        }
    }
}
