#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ

/// The client's own OpenSSL session on a connection's socket. librabbitmq 0.11's TLS socket
/// cannot be written to except one frame at a time, does not load the system's trust store, and
/// verifies DNS names only; this one is used by librabbitmq (through ``SocketBridge``) and by
/// the client's batched writes alike, so every byte goes through one SSL object.
///
/// `@unchecked Sendable`: the object moves between threads only under the direct-publish claim
/// of ``MailboxState``: a publishing task uses it only while it holds the claim, which it gets
/// only while the I/O thread sleeps in `poll` (outside OpenSSL), and the I/O thread uses it again
/// only after it saw the claim released under the same lock. So one thread at a time uses it,
/// and the lock orders their accesses, as OpenSSL requires of an SSL object.
final class TLSSession: @unchecked Sendable {
    private let context: OpaquePointer
    private let ssl: OpaquePointer
    /// Why the handshake failed, in words that say which check it was.
    private(set) var failure: AMQPError?

    /// Prepares a session for `host` with `settings`; throws when a file cannot be loaded.
    init(settings: AMQPConnection.Configuration.TLS, host: String) throws(AMQPError) {
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw AMQPError(code: .tlsFailed, message: "TLS: OpenSSL could not create a context: \(Self.openSSLError())")
        }
        self.context = context
        guard let ssl = SSL_new(context) else {
            SSL_CTX_free(context)
            throw AMQPError(code: .tlsFailed, message: "TLS: OpenSSL could not create a session: \(Self.openSSLError())")
        }
        self.ssl = ssl
        // Whatever the system's OpenSSL policy allows: TLS 1.0 and 1.1 are broken.
        guard camqp_ssl_set_min_tls12(ssl) == 1 else {
            throw AMQPError(code: .tlsFailed, message: "TLS: could not require TLS 1.2 or newer: \(Self.openSSLError())")
        }
        guard camqp_ssl_set_partial_writes(ssl) == 1 else {
            throw AMQPError(code: .tlsFailed, message: "TLS: could not enable partial writes")
        }

        if let file = settings.caCertificateFile {
            guard SSL_CTX_load_verify_locations(context, file, nil) == 1 else {
                throw AMQPError(code: .tlsFailed, message: "TLS: could not load the CA file \(file): \(Self.openSSLError())")
            }
        } else if SSL_CTX_set_default_verify_paths(context) != 1 {
            throw AMQPError(code: .tlsFailed, message: "TLS: could not load the system's trust store: \(Self.openSSLError())")
        }
        if let certificate = settings.certificateFile, let key = settings.privateKeyFile {
            guard SSL_use_certificate_chain_file(ssl, certificate) == 1 else {
                throw AMQPError(
                    code: .tlsFailed, message: "TLS: could not load the client certificate \(certificate): \(Self.openSSLError())")
            }
            guard SSL_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM) == 1, SSL_check_private_key(ssl) == 1 else {
                throw AMQPError(
                    code: .tlsFailed,
                    message: "TLS: could not load the private key \(key) (or it does not match the certificate): \(Self.openSSLError())")
            }
        }

        let name = settings.serverName ?? host
        // SSL_set1_host with an empty name turns the name check off.
        guard !name.allSatisfy(\.isWhitespace) else {
            throw AMQPError(code: .tlsFailed, message: "TLS: no server name to verify the broker's certificate against")
        }
        let isAddress = Self.isIPAddress(name)
        if settings.verifiesPeer {
            SSL_set_verify(ssl, SSL_VERIFY_PEER, nil)
            // IP addresses are checked against the certificate's IP SANs, names against its DNS names.
            let nameSet =
                isAddress ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) : SSL_set1_host(ssl, name)
            guard nameSet == 1 else {
                throw AMQPError(code: .tlsFailed, message: "TLS: cannot verify the name \(name): \(Self.openSSLError())")
            }
        } else {
            SSL_set_verify(ssl, SSL_VERIFY_NONE, nil)
        }
        if settings.sendsServerName && !isAddress {
            _ = camqp_ssl_set_sni(ssl, name)
        }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
    }

    // MARK: Handshake

    /// Performs the handshake on `socket` (non-blocking), waiting at most until `deadline`.
    /// Returns whether it succeeded; ``failure`` says why not.
    func handshake(socket: Int32, deadline: ContinuousClock.Instant) -> Bool {
        ERR_clear_error()
        // A BIO that sends with MSG_NOSIGNAL: a write to a closed connection must not raise SIGPIPE.
        guard camqp_ssl_set_socket(ssl, socket) == 1 else {
            failure = AMQPError(code: .tlsFailed, message: "TLS: could not attach to the socket")
            return false
        }
        while true {
            let result = SSL_connect(ssl)
            if result == 1 { return true }
            let error = SSL_get_error(ssl, result)
            let events: Int32
            switch error {
            case SSL_ERROR_WANT_READ: events = Int32(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int32(POLLOUT)
            default:
                failure = handshakeFailure(error)
                return false
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            var descriptor = pollfd(fd: socket, events: Int16(events), revents: 0)
            guard remaining > .zero, poll(&descriptor, 1, Int32(clamping: max(1, remaining.milliseconds))) > 0 else {
                failure = AMQPError(code: .connectTimeout, message: "TLS: the handshake did not finish in time")
                return false
            }
        }
    }

    /// Says which check failed: the chain, the name, the dates, or the handshake itself.
    private func handshakeFailure(_ error: Int32) -> AMQPError {
        let verification = SSL_get_verify_result(ssl)
        if verification != X509_V_OK {
            let reason = String(cString: X509_verify_cert_error_string(verification))
            return AMQPError(
                code: .tlsFailed,
                message: "TLS: the broker's certificate was refused: \(reason) (verification error \(verification))")
        }
        if error == SSL_ERROR_SYSCALL || error == SSL_ERROR_ZERO_RETURN {
            return AMQPError(code: .tlsFailed, message: "TLS: the broker closed the connection during the handshake")
        }
        return AMQPError(code: .tlsFailed, message: "TLS: the handshake failed: \(Self.openSSLError())")
    }

    // MARK: Reading and writing

    /// What a read or write did.
    enum IOResult {
        case transferred(Int)
        /// Nothing now: wait until the socket is readable (`read`) or writable, then try again
        /// (with the same bytes, for a write).
        case wouldBlock(needsRead: Bool)
        /// The broker closed the TLS session.
        case closed
        case failed
    }

    /// Reads decrypted bytes into `buffer`, as many records as are ready.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        var total = 0
        while total < buffer.count {
            ERR_clear_error()
            let count = SSL_read(ssl, buffer.baseAddress! + total, Int32(clamping: buffer.count - total))
            if count > 0 {
                total += Int(count)
                continue
            }
            if total > 0 { return .transferred(total) }
            return outcome(of: count)
        }
        return .transferred(total)
    }

    /// Encrypts and writes bytes; a partial write transfers fewer than `bytes.count`.
    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        guard bytes.count > 0 else { return .transferred(0) }
        ERR_clear_error()
        let count = SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
        return count > 0 ? .transferred(Int(count)) : outcome(of: count)
    }

    private func outcome(of result: Int32) -> IOResult {
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ: .wouldBlock(needsRead: true)
        case SSL_ERROR_WANT_WRITE: .wouldBlock(needsRead: false)
        case SSL_ERROR_ZERO_RETURN: .closed
        default: .failed
        }
    }

    /// Whether OpenSSL holds decrypted bytes that `poll` on the socket would not show.
    var hasBufferedInput: Bool { SSL_pending(ssl) > 0 }

    /// Sends TLS's close notification, without waiting for the broker's.
    func shutdown() {
        _ = SSL_shutdown(ssl)
    }

    // MARK: Helpers

    /// What is unsafe in `settings` but allowed, for the opener to log on each connection attempt.
    static func warnings(for settings: AMQPConnection.Configuration.TLS) -> [String] {
        var warnings: [String] = []
        if !settings.verifiesPeer {
            warnings.append(
                "TLS: the broker's certificate is not verified (verifiesPeer is false): anyone on the network path can pose as the broker and receive the credentials")
        }
        if settings.certificateFile != nil, let key = settings.privateKeyFile {
            var status = stat()
            if stat(key, &status) == 0, status.st_mode & 0o077 != 0 {
                warnings.append(
                    "TLS: the private key file \(key) is accessible to its group or others (mode \(String(status.st_mode & 0o777, radix: 8))); make it private to its owner (chmod 600)")
            }
        }
        return warnings
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The reason OpenSSL gives for its last error.
    static func openSSLError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "no details" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
