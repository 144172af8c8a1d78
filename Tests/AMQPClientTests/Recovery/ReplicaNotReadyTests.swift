import Testing

@testable import AMQPClient

@Suite("Recovery: a replica that is not ready")
struct ReplicaNotReadyTests {
    @Test("RabbitMQ's refusal to consume where the queue's replica is not running is retried; other refusals are not")
    func classification() {
        let notReady = AMQPError(
            code: .channelClosed, message: "closed", replyCode: 406,
            replyText: "PRECONDITION_FAILED - queue 'queue 's' in vhost '/'' does not have a replica on the local node")
        #expect(ConnectionStateMachine.replicaNotReady(notReady))
        let gone = AMQPError(code: .channelClosed, message: "closed", replyCode: 404, replyText: "NOT_FOUND - no queue 's'")
        #expect(!ConnectionStateMachine.replicaNotReady(gone))
        let otherPrecondition = AMQPError(
            code: .channelClosed, message: "closed", replyCode: 406, replyText: "PRECONDITION_FAILED - inequivalent arg")
        #expect(!ConnectionStateMachine.replicaNotReady(otherPrecondition))
    }
}
