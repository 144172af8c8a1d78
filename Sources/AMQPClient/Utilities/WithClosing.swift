/// Runs `body` with `resource`, then closes it however `body` ends: the scoped APIs
/// (``AMQPConnection/withConnection(to:logger:_:)``, ``AMQPConnection/withChannel(_:)``).
func withClosing<Resource, Result>(
    _ resource: Resource,
    close: (Resource) async -> Void,
    _ body: (Resource) async throws -> sending Result
) async throws -> sending Result {
    let result: Result
    do {
        result = try await body(resource)
    } catch {
        await close(resource)
        throw error
    }
    await close(resource)
    return result
}
