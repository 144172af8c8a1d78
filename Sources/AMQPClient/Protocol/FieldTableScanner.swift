/// Walks an encoded AMQP field table without decoding it, to check its structure and nesting
/// depth before a recursive decoder sees it.
enum FieldTableScanner {
    enum Outcome: Equatable {
        case valid
        case tooDeep
        case tooManyEntries
        case malformed(String)
    }

    /// Scans the table whose 4-byte length is at `start` in `bytes`.
    static func scan(_ bytes: [UInt8], tableAt start: Int, maximumDepth: Int, maximumEntries: Int = .max) -> Outcome {
        bytes.withUnsafeBytes { scan($0, tableAt: start, maximumDepth: maximumDepth, maximumEntries: maximumEntries) }
    }

    /// Scans the table whose 4-byte length is at `start` in `bytes`. `maximumEntries` bounds the
    /// values of the table and of everything nested in it, together.
    static func scan(_ bytes: UnsafeRawBufferPointer, tableAt start: Int, maximumDepth: Int, maximumEntries: Int = .max)
        -> Outcome
    {
        var entries = 0
        // Each open table or array: where it ends, and whether its entries have keys.
        var open: [(end: Int, keyed: Bool)] = []
        var offset = start
        func readLength() -> Int? {
            guard offset + 4 <= bytes.count else { return nil }
            defer { offset += 4 }
            return Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
                | Int(bytes[offset + 3])
        }
        func openContainer(keyed: Bool) -> Outcome? {
            guard let length = readLength() else { return .malformed("a truncated length") }
            guard offset + length <= (open.last?.end ?? bytes.count) else {
                return .malformed("a table or array longer than what holds it")
            }
            guard open.count < maximumDepth else { return .tooDeep }
            open.append((offset + length, keyed))
            return nil
        }
        if let failure = openContainer(keyed: true) { return failure }
        while let container = open.last {
            if offset == container.end {
                open.removeLast()
                continue
            }
            entries += 1
            guard entries <= maximumEntries else { return .tooManyEntries }
            if container.keyed {
                let keyLength = Int(bytes[offset])
                offset += 1 + keyLength
            }
            guard offset < container.end else { return .malformed("an entry without a value") }
            let type = bytes[offset]
            offset += 1
            let fixed: Int
            switch type {
            case UInt8(ascii: "t"), UInt8(ascii: "b"), UInt8(ascii: "B"): fixed = 1
            case UInt8(ascii: "s"), UInt8(ascii: "u"): fixed = 2
            case UInt8(ascii: "I"), UInt8(ascii: "i"), UInt8(ascii: "f"): fixed = 4
            case UInt8(ascii: "l"), UInt8(ascii: "L"), UInt8(ascii: "d"), UInt8(ascii: "T"): fixed = 8
            case UInt8(ascii: "D"): fixed = 5
            case UInt8(ascii: "V"): fixed = 0
            case UInt8(ascii: "S"), UInt8(ascii: "x"):
                guard let length = readLength() else { return .malformed("a truncated string") }
                fixed = length
            case UInt8(ascii: "F"):
                if let failure = openContainer(keyed: true) { return failure }
                continue
            case UInt8(ascii: "A"):
                if let failure = openContainer(keyed: false) { return failure }
                continue
            default:
                return .malformed("a field of unknown type \(type)")
            }
            offset += fixed
            guard offset <= container.end else { return .malformed("a field longer than its table") }
        }
        return .valid
    }
}
