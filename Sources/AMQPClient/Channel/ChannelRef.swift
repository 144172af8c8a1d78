/// Identifies one opening of a channel: channel numbers are reused after a close, the
/// epoch is not, so a command from a closed channel can never act on its successor.
struct ChannelRef: Sendable, Hashable {
    let id: UInt16
    let epoch: UInt32
}
