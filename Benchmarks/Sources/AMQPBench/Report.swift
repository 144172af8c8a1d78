import Foundation

/// One figure of one workload, for the SDK and for raw librabbitmq.
struct Row: Encodable {
    var workload: String
    var metric: String
    var sdk: Double?
    var rawC: Double?
    var ratio: Double?

    enum CodingKeys: String, CodingKey {
        case workload, metric, sdk, ratio
        case rawC = "raw_c"
    }

    /// Writes `null` for a missing figure rather than leaving the key out.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(workload, forKey: .workload)
        try container.encode(metric, forKey: .metric)
        try container.encode(sdk, forKey: .sdk)
        try container.encode(rawC, forKey: .rawC)
        try container.encode(ratio, forKey: .ratio)
    }
}

/// Collects the figures of every round and reports the median of each.
struct Report {
    private var samples: [String: (sdk: [Double], rawC: [Double])] = [:]
    private var order: [(workload: String, metric: String)] = []

    mutating func add(_ workload: String, _ metric: String, sdk: Double?, rawC: Double?) {
        let key = "\(workload)\u{0}\(metric)"
        if samples[key] == nil {
            samples[key] = ([], [])
            order.append((workload, metric))
        }
        if let sdk { samples[key]!.sdk.append(sdk) }
        if let rawC { samples[key]!.rawC.append(rawC) }
    }

    var rows: [Row] {
        order.map { workload, metric in
            let values = samples["\(workload)\u{0}\(metric)"]!
            let sdk = median(values.sdk)
            let rawC = median(values.rawC)
            var ratio: Double?
            if let sdk, let rawC, rawC != 0 { ratio = sdk / rawC }
            return Row(workload: workload, metric: metric, sdk: sdk, rawC: rawC, ratio: ratio)
        }
    }

    func table() -> String {
        func format(_ value: Double?) -> String {
            guard let value else { return "-" }
            if value >= 1000 { return String(format: "%.0f", value) }
            if value >= 10 { return String(format: "%.1f", value) }
            return String(format: "%.2f", value)
        }
        var lines = ["| workload | metric | SDK | raw C | SDK / raw C |", "|---|---|---:|---:|---:|"]
        for row in rows {
            lines.append(
                "| \(row.workload) | \(row.metric) | \(format(row.sdk)) | \(format(row.rawC)) | \(row.ratio.map { String(format: "%.2f", $0) } ?? "-") |")
        }
        return lines.joined(separator: "\n")
    }

    /// Each row's ratio over several full runs: the median and the lowest and highest.
    static func spreadTable(_ runs: [Report]) -> String {
        var lines = ["| workload | metric | median SDK / raw C | min | max | runs |", "|---|---|---:|---:|---:|---:|"]
        guard let first = runs.first else { return lines.joined(separator: "\n") }
        for row in first.rows {
            let ratios = runs.compactMap { run in
                run.rows.first { $0.workload == row.workload && $0.metric == row.metric }?.ratio
            }
            guard let median = first.median(ratios), let low = ratios.min(), let high = ratios.max() else { continue }
            lines.append(
                "| \(row.workload) | \(row.metric) | \(String(format: "%.2f", median)) | \(String(format: "%.2f", low)) | "
                    + "\(String(format: "%.2f", high)) | \(ratios.count) |")
        }
        return lines.joined(separator: "\n")
    }

    /// `nil` for a side that did not run.
    private func median(_ values: [Double]) -> Double? {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return nil }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}
