import Logging

// Connecting and logging in, on the first connect and on every recovery attempt.

extension IOLoop {
    /// Connects to the configured endpoints in turn until one accepts. Throws the last one's error.
    func openAnyEndpoint() throws(AMQPError) {
        var endpoints = core.configuration.endpoints
        if core.configuration.endpointOrder == .shuffled { endpoints.shuffle() }
        var lastError: AMQPError?
        for endpoint in endpoints {
            do {
                try open(endpoint)
                return
            } catch {
                if endpoints.count > 1 {
                    logger.debug(
                        "could not connect", metadata: [LoggingKeys.endpoint: "\(endpoint)", LoggingKeys.error: .untrusted(error)])
                }
                lastError = error
            }
        }
        throw lastError!
    }

    private func open(_ endpoint: AMQPConnection.Configuration.Endpoint) throws(AMQPError) {
        var deadline = ContinuousClock.now + core.configuration.connectTimeout
        if recovering, let attemptDeadline = machine.nextDeadline { deadline = min(deadline, attemptDeadline) }
        if let tls = core.configuration.tls {
            for warning in TLSSession.warnings(for: tls) {
                logger.warning("\(warning)", metadata: [LoggingKeys.endpoint: "\(endpoint)"])
            }
        }
        let connection = try LibRabbitMQConnection.open(
            endpoint, configuration: core.configuration, clientProperties: clientProperties, deadline: deadline,
            blockingOn: { [core] in core.setBlockingSocket($0) })
        // Restoring a recovered connection blocks on its socket too; the loop's own waits do not.
        if !recovering { core.setBlockingSocket(nil) }
        self.connection = connection
        // Frames on any other channel are refused before librabbitmq keeps memory for them.
        connection.bridge.isChannelOpen = { [unowned self] id in
            self.channels[id] != nil || id == self.machine.topologyChannel
        }
        core.connectionOpened(
            transport: connection.transport, frameMax: connection.frameMax, endpoint: endpoint,
            serverProperties: connection.serverProperties)
        heartbeats = HeartbeatSchedule(seconds: connection.heartbeatSeconds, openedAt: .now)
        lastFrameAt = .now
        unansweredCloseAt = nil
        logger[metadataKey: LoggingKeys.endpoint] = "\(endpoint)"
        logger.debug(
            "AMQP connection open",
            metadata: [
                LoggingKeys.heartbeat: "\(connection.heartbeatSeconds)", LoggingKeys.frameMax: "\(connection.frameMax)",
                LoggingKeys.channelMax: "\(connection.channelMax)",
            ])
    }

    /// What the client tells the broker about itself: RabbitMQ sends `connection.blocked` and
    /// consumer cancellations only to clients that announce those capabilities.
    private var clientProperties: AMQPFieldTable {
        var capabilities: AMQPFieldTable = [:]
        for capability in [
            "publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
            "connection.blocked", "authentication_failure_close",
        ] {
            capabilities[capability] = .bool(true)
        }
        var properties: AMQPFieldTable = [
            "product": .string(AMQPClientInfo.product),
            "version": .string(AMQPClientInfo.version),
            "platform": .string(AMQPClientInfo.platform),
            "information": .string("Swift client for RabbitMQ, built on librabbitmq"),
            "capabilities": .table(capabilities),
        ]
        if let name = core.configuration.connectionName {
            properties["connection_name"] = .string(name)
        }
        return properties
    }
}
