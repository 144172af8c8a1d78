import Foundation

/// CPU time (user + system) of the whole process, and wall time, around one run.
struct Usage {
    var wall: Duration
    var cpu: Duration

    static func measure(_ body: () async throws -> Void) async rethrows -> Usage {
        let cpuStart = processCPUTime()
        let start = ContinuousClock.now
        try await body()
        return Usage(wall: ContinuousClock.now - start, cpu: processCPUTime() - cpuStart)
    }

    static func processCPUTime() -> Duration {
        let usage = selfUsage()
        func duration(_ time: timeval) -> Duration { .seconds(Int64(time.tv_sec)) + .microseconds(Int64(time.tv_usec)) }
        return duration(usage.ru_utime) + duration(usage.ru_stime)
    }
}

enum Memory {
    /// Resident set size now, in MiB (from /proc/self/statm).
    static func residentMiB() -> Double {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
    }

    /// Peak resident set size of the process so far, in MiB.
    static func peakResidentMiB() -> Double {
        // ru_maxrss is in KiB on Linux, in bytes on Darwin.
        #if canImport(Darwin)
        Double(selfUsage().ru_maxrss) / 1_048_576
        #else
        Double(selfUsage().ru_maxrss) / 1024
        #endif
    }
}

/// getrusage(RUSAGE_SELF), whose "who" argument Glibc and Darwin type differently.
func selfUsage() -> rusage {
    var usage = rusage()
    #if canImport(Glibc)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    return usage
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Runs blocking work (the raw C baseline) on a thread of its own, off Swift's concurrency pool.
func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            // Named, so that profiles tell the C side from the SDK's threads.
            Thread.current.name = "raw-c"
            continuation.resume(returning: work())
        }
    }
}
