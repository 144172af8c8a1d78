/// An AMQP 0-9-1 method: its class and method numbers, as the protocol numbers them
/// (`class << 16 | method`, the same value as librabbitmq's `AMQP_*_METHOD` constants).
///
/// Replies are matched to requests by this number, so the rest of the client never needs
/// librabbitmq's constants.
struct AMQPMethodID: Hashable, Sendable, CustomStringConvertible {
    let rawValue: UInt32

    init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    init(classID: UInt16, methodID: UInt16) {
        self.rawValue = UInt32(classID) << 16 | UInt32(methodID)
    }

    var classID: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 16) }
    var methodID: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    var description: String { "\(classID).\(methodID)" }

    static var connectionClose: Self { .init(classID: 10, methodID: 50) }
    static var connectionCloseOk: Self { .init(classID: 10, methodID: 51) }
    static var channelOpenOk: Self { .init(classID: 20, methodID: 11) }
    /// Not a reply: the broker asks the client to pause or resume sending (RabbitMQ no longer does).
    static var channelFlow: Self { .init(classID: 20, methodID: 20) }
    static var channelClose: Self { .init(classID: 20, methodID: 40) }
    static var channelCloseOk: Self { .init(classID: 20, methodID: 41) }
    static var exchangeDeclareOk: Self { .init(classID: 40, methodID: 11) }
    static var exchangeDeleteOk: Self { .init(classID: 40, methodID: 21) }
    static var exchangeBindOk: Self { .init(classID: 40, methodID: 31) }
    static var exchangeUnbindOk: Self { .init(classID: 40, methodID: 51) }
    static var queueDeclareOk: Self { .init(classID: 50, methodID: 11) }
    static var queueBindOk: Self { .init(classID: 50, methodID: 21) }
    static var queuePurgeOk: Self { .init(classID: 50, methodID: 31) }
    static var queueDeleteOk: Self { .init(classID: 50, methodID: 41) }
    static var queueUnbindOk: Self { .init(classID: 50, methodID: 51) }
    static var basicQosOk: Self { .init(classID: 60, methodID: 11) }
    static var basicConsumeOk: Self { .init(classID: 60, methodID: 21) }
    static var basicCancelOk: Self { .init(classID: 60, methodID: 31) }
    static var basicGetOk: Self { .init(classID: 60, methodID: 71) }
    static var basicGetEmpty: Self { .init(classID: 60, methodID: 72) }
    static var basicRecoverOk: Self { .init(classID: 60, methodID: 111) }
    static var confirmSelectOk: Self { .init(classID: 85, methodID: 11) }
}
