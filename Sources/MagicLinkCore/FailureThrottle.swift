import Synchronization

/// Slows down guessing: after `limit.maximum` failed logins or session checks from one client IP
/// within `limit.window` seconds, that IP gets `rate_limited` for those ops until the oldest
/// failure leaves the window. Kept in memory (a restart forgets it): the check is on the hot path
/// of `session`, where a database query per request would cost more than it protects.
///
/// At most `capacity` IPs are tracked. When the table is full, entries whose failures all left
/// the window are dropped (at most once a second, so the cost stays amortized O(1)); if it is
/// still full, new IPs share one overflow entry instead of pushing out tracked ones, so flooding
/// the table from many addresses never frees an IP that is being throttled.
public final class FailureThrottle: Sendable {
    public let limit: RateLimit
    private let capacity: Int
    private let time: any TimeSource
    private struct Table {
        var failures: [String: [Int64]] = [:]
        var lastPrune: Int64 = .min
    }
    private let state = Mutex(Table())
    static let overflowKey = "*overflow*"

    public init(limit: RateLimit, time: any TimeSource, capacity: Int = 100_000) {
        self.limit = limit
        self.time = time
        self.capacity = max(1, capacity)
    }

    /// Seconds until `key` may try again, or nil when it may now.
    public func retryAfter(_ key: String) -> Int64? {
        let now = time.now()
        return state.withLock { table -> Int64? in
            let key = table.failures[key] == nil && table.failures.count >= capacity ? Self.overflowKey : key
            guard let times = table.failures[key]?.filter({ $0 > now - limit.window }), times.count >= limit.maximum else {
                return nil
            }
            return max(1, times[times.count - limit.maximum] + limit.window - now)
        }
    }

    public func recordFailure(_ key: String) {
        let now = time.now()
        state.withLock { table in
            var key = key
            if table.failures[key] == nil && table.failures.count >= capacity {
                if now != table.lastPrune {
                    table.lastPrune = now
                    table.failures = table.failures.filter { ($0.value.last ?? .min) > now - limit.window }
                }
                if table.failures.count >= capacity { key = Self.overflowKey }
            }
            var times = table.failures[key] ?? []
            times.removeAll { $0 <= now - limit.window }
            times.append(now)
            // Only the newest `maximum` matter for the decision.
            if times.count > limit.maximum { times.removeFirst(times.count - limit.maximum) }
            table.failures[key] = times
        }
    }
}
