import CCurl

/// The libcurl half of one exchange: owns the easy handle, its header list and error
/// buffer, and receives libcurl's callbacks.
///
/// Built and configured by the task calling `execute`, then handed to the curl thread
/// through ``CurlEventLoop``'s inbox, and from then on touched only by that thread. The
/// loop's table of active transfers holds it while the easy handle is in the multi
/// handle, so the callbacks' context pointer (`passUnretained`) is always valid; the
/// handle is freed in `deinit`, after the loop has removed it from the multi handle.
///
/// Easy handles are not pooled: libcurl 7.88 (Debian 12) keeps a handle's receive buffer
/// through `curl_easy_reset` but forgets its size (back to 16 KiB) and refuses a new
/// `CURLOPT_BUFFERSIZE` while the buffer exists, so a reset handle would read 16 KiB
/// into the 4 KiB buffer set below. Connections, and so TLS sessions, are reused all the
/// same: they live in the multi handle's cache, not in easy handles.
///
/// `@unchecked Sendable`: it crosses threads exactly once, through the inbox lock, before
/// the curl thread first uses it; it is never used by two threads at once.
final class CurlTransfer: @unchecked Sendable {
    /// The half shared with the reader.
    let state: TransferState
    /// `host[:port]`, for error messages and logs.
    let host: String
    let easy: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer: UnsafeMutablePointer<CChar>

    // Timers, owned by the curl thread.
    private let idleTimeout: Duration?
    private let totalTimeout: Duration?
    private(set) var totalDeadline: ContinuousClock.Instant?
    private var lastActivity: ContinuousClock.Instant?
    /// Paused because the reader's buffer is full: silence is then ours, not the server's.
    private(set) var isPaused = false
    /// Where to report a new idle deadline; set when the loop adds the transfer.
    private var timers: TimerSchedule?

    // Response head, assembled by the header callback.
    private var headers = HTTPHeaders()
    private var headDelivered = false

    private(set) var receivedBytes = 0
    private(set) var startedAt: ContinuousClock.Instant?

    init(request: CurlRequest, state: TransferState) throws(HTTPClientError) {
        guard let url = URLParts(request.url) else {
            throw HTTPClientError(.invalidRequest, "not an absolute http(s) URL")
        }
        guard let easy = curl_easy_init() else {
            throw HTTPClientError(.invalidRequest, "curl_easy_init failed")
        }
        self.easy = easy
        self.state = state
        self.host = String(url.authority)
        self.idleTimeout = request.idleTimeout
        self.totalTimeout = request.totalTimeout
        self.errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        self.errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
        try self.configure(request, tls: url.scheme.equalsCaseInsensitively("https"))
    }

    deinit {
        // Removed from the multi handle by now (the loop holds us while it is in there).
        curl_easy_cleanup(self.easy)
        curl_slist_free_all(self.headerList)
        self.errorBuffer.deallocate()
    }

    // MARK: Configuration

    private func configure(_ request: CurlRequest, tls: Bool) throws(HTTPClientError) {
        let context = Unmanaged.passUnretained(self).toOpaque()

        try self.set(CURLOPT_URL, request.url)
        try self.set(CURLOPT_PROTOCOLS_STR, "http,https")
        try self.set(CURLOPT_NOSIGNAL, 1)  // we are multi-threaded: no SIGALRM for DNS timeouts
        try self.set(CURLOPT_CONNECTTIMEOUT_MS, request.connectTimeout.milliseconds)
        try self.set(CURLOPT_TCP_KEEPALIVE, 1)  // completions can stream for minutes
        // The receive buffer each open transfer holds (libcurl's default is 16 KiB). A
        // streamed chunk is a few hundred bytes, and with 10,000 streams open the default
        // alone is 160 MiB; a large body just takes a few more reads.
        try self.set(CURLOPT_BUFFERSIZE, 4096)
        try self.set(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1)  // a proxy's CONNECT reply is not the response
        // HTTP/2 where the server offers it in the TLS handshake (ALPN), HTTP/1.1 otherwise
        // and over plain http. Over HTTP/2 the requests to one host share a connection,
        // each its own stream (the multi handle multiplexes).
        try self.set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        if tls {
            // While the first connection to a host is still in its handshake, later
            // requests wait to learn whether it multiplexes instead of each opening (and
            // handshaking) a connection of its own. Not for plain http: there the answer
            // is HTTP/1.1 anyway, and the wait would last until the first response's head.
            try self.set(CURLOPT_PIPEWAIT, 1)
        }
        if let caFile = request.caFile {
            // Trust this CA bundle instead of the system's; verification stays on.
            try self.set(CURLOPT_CAINFO, caFile)
        }
        try self.check(sluice_curl_setopt_ptr(self.easy, CURLOPT_ERRORBUFFER, self.errorBuffer))
        try self.check(sluice_curl_setopt_ptr(self.easy, CURLOPT_PRIVATE, context))

        // Method and body. POSTFIELDS is used for any method that sends a body; libcurl
        // copies it, so the request's array need not outlive this call.
        let method = request.method
        guard !method.isEmpty, method.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPClientError(.invalidRequest, "invalid HTTP method")
        }
        if method == "GET" && request.body.isEmpty {
            try self.set(CURLOPT_HTTPGET, 1)
        } else if method == "HEAD" && request.body.isEmpty {
            try self.set(CURLOPT_NOBODY, 1)
        } else {
            if !request.body.isEmpty || method == "POST" || method == "PUT" || method == "PATCH" {
                try self.check(sluice_curl_setopt_off(self.easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)))
                let code = request.body.withUnsafeBytes { bytes in
                    // A non-null pointer even for an empty body: null means "read from stdin".
                    sluice_curl_setopt_ptr(self.easy, CURLOPT_COPYPOSTFIELDS, bytes.baseAddress ?? UnsafeRawPointer(self.errorBuffer))
                }
                try self.check(code)
            }
            if method != "POST" {
                try self.set(CURLOPT_CUSTOMREQUEST, method)
            }
        }

        // Headers. `Expect:` stops libcurl from waiting for `100 Continue` on large bodies;
        // an empty `Content-Type:` drops its form-urlencoded default.
        var list: UnsafeMutablePointer<curl_slist>?
        for (name, value) in request.headers {
            guard Self.isValidHeader(name: name, value: value) else {
                curl_slist_free_all(list)
                throw HTTPClientError(.invalidRequest, "invalid header field \"\(Self.printableName(name))\"")
            }
            // `Name;` is libcurl's way to send a header with an empty value.
            list = try Self.append(value.isEmpty ? "\(name);" : "\(name): \(value)", to: list)
        }
        if !request.headers.contains("expect") { list = try Self.append("Expect:", to: list) }
        if !request.headers.contains("content-type") { list = try Self.append("Content-Type:", to: list) }
        self.headerList = list
        try self.check(sluice_curl_setopt_ptr(self.easy, CURLOPT_HTTPHEADER, list))

        // Callbacks: non-capturing functions that find this object through `context`.
        try self.check(sluice_curl_setopt_ptr(self.easy, CURLOPT_HEADERDATA, context))
        try self.check(sluice_curl_setopt_header(self.easy) { buffer, size, count, context in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue()
            return transfer.didReceiveHeader(UnsafeRawBufferPointer(start: buffer, count: size * count))
        })
        try self.check(sluice_curl_setopt_ptr(self.easy, CURLOPT_WRITEDATA, context))
        try self.check(sluice_curl_setopt_write(self.easy) { buffer, size, count, context in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue()
            return transfer.didReceiveBody(UnsafeRawBufferPointer(start: buffer, count: size * count))
        })
        if self.idleTimeout != nil {
            try self.check(sluice_curl_setopt_ptr(self.easy, CURLOPT_PREREQDATA, context))
            try self.check(sluice_curl_setopt_prereq(self.easy) { context, _, _, _, _ in
                Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue().didConnect()
                return CURL_PREREQFUNC_OK
            })
        }
    }

    private func set(_ option: CURLoption, _ value: Int) throws(HTTPClientError) {
        try self.check(sluice_curl_setopt_long(self.easy, option, value))
    }

    /// libcurl copies string options (since 7.17), so the C string may be temporary.
    private func set(_ option: CURLoption, _ value: String) throws(HTTPClientError) {
        guard !value.utf8.contains(0) else { throw HTTPClientError(.invalidRequest, "NUL byte in the URL or method") }
        let code = value.withCString { sluice_curl_setopt_ptr(self.easy, option, $0) }
        try self.check(code)
    }

    private func check(_ code: CURLcode) throws(HTTPClientError) {
        guard code == CURLE_OK else {
            throw HTTPClientError(.invalidRequest, "\(self.host): \(String(cString: curl_easy_strerror(code)))", curlCode: Int(code.rawValue))
        }
    }

    private static func append(_ line: String, to list: UnsafeMutablePointer<curl_slist>?) throws(HTTPClientError) -> UnsafeMutablePointer<curl_slist> {
        guard let appended = curl_slist_append(list, line) else {
            curl_slist_free_all(list)
            throw HTTPClientError(.invalidRequest, "out of memory building the header list")
        }
        return appended
    }

    /// A token for the name (RFC 9110) and no CR, LF or NUL in the value: anything else
    /// would let a value inject headers.
    private static func isValidHeader(name: String, value: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
            && !value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }
    }

    private static func printableName(_ name: String) -> String {
        String(name.unicodeScalars.prefix(64).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "?" })
    }

    // MARK: Curl thread

    /// Called by the loop as it adds the easy handle to the multi handle.
    func start(at now: ContinuousClock.Instant, timers: TimerSchedule) {
        self.startedAt = now
        self.timers = timers
        if let totalTimeout {
            let deadline = now + totalTimeout
            self.totalDeadline = deadline
            timers.schedule(deadline)
        }
    }

    /// The earliest instant at which this transfer times out, if any.
    var deadline: ContinuousClock.Instant? {
        var idleDeadline: ContinuousClock.Instant?
        if let idleTimeout, let lastActivity, !self.isPaused {
            idleDeadline = lastActivity + idleTimeout
        }
        switch (idleDeadline, self.totalDeadline) {
        case (let a?, let b?): return min(a, b)
        case (let a, let b): return a ?? b
        }
    }

    /// The timeout error to fail with once `deadline` has passed.
    func timeoutError(now: ContinuousClock.Instant) -> HTTPClientError {
        if let totalDeadline, now >= totalDeadline, let totalTimeout {
            return HTTPClientError(.totalTimeout, "\(self.host) did not complete the response within \(totalTimeout)")
        }
        return HTTPClientError(.idleTimeout, "\(self.host) sent nothing for \(self.idleTimeout ?? .zero)")
    }

    /// The reader drained its buffer: carry on.
    func resume(at now: ContinuousClock.Instant) {
        guard self.isPaused else { return }
        self.isPaused = false
        self.noteActivity(now)
        // May call the write callback right away with the chunk refused earlier.
        _ = curl_easy_pause(self.easy, CURLPAUSE_RECV_CONT | CURLPAUSE_SEND_CONT)
    }

    /// The exchange is over; `code` is libcurl's result. The loop has already removed the
    /// handle from the multi handle.
    func complete(_ code: CURLcode) {
        guard code == CURLE_OK else {
            self.state.finish(self.error(for: code))
            return
        }
        if !self.headDelivered {
            // No header callback saw the blank line (e.g. an HTTP/0.9 reply).
            self.deliverHead()
        }
        self.state.finish(nil)
    }

    private func error(for code: CURLcode) -> HTTPClientError {
        let detail = self.errorBuffer.pointee != 0 ? String(cString: self.errorBuffer) : String(cString: curl_easy_strerror(code))
        let kind: HTTPClientError.Code
        switch code {
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE:
            kind = .tlsVerification
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT,
            CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CERTPROBLEM:
            kind = .connect
        case CURLE_OPERATION_TIMEDOUT:
            // Idle and total timeouts are ours; libcurl only times the connect phase.
            kind = .connect
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            kind = .invalidRequest
        default:
            kind = .transfer
        }
        return HTTPClientError(kind, "\(self.host): \(detail)", curlCode: Int(code.rawValue))
    }

    private func noteActivity(_ now: ContinuousClock.Instant) {
        guard let idleTimeout else { return }
        self.lastActivity = now
        // Deadlines only move later while bytes flow; after a silence they may come earlier
        // than what the loop knows, so report them.
        self.timers?.schedule(now + idleTimeout)
    }

    private func didConnect() {
        self.noteActivity(.now)
    }

    private func didReceiveHeader(_ line: UnsafeRawBufferPointer) -> Int {
        if self.idleTimeout != nil { self.lastActivity = ContinuousClock.now }
        if self.state.isFinished { return 0 }  // cancelled: make libcurl stop now
        guard !self.headDelivered else { return line.count }  // trailers

        var end = line.count
        while end > 0, line[end - 1] == 0x0A || line[end - 1] == 0x0D { end -= 1 }
        let text = Substring(String(decoding: UnsafeRawBufferPointer(rebasing: line[..<end]), as: UTF8.self))

        if text.isEmpty {
            // End of a header block. 1xx blocks (100 Continue, 103 Early Hints) are
            // followed by the real one; a status of 0 means a proxy's CONNECT reply.
            var status = 0
            _ = sluice_curl_getinfo_long(self.easy, CURLINFO_RESPONSE_CODE, &status)
            if status >= 200 || status == 101 {
                self.deliverHead()
            } else {
                self.headers = HTTPHeaders()
            }
        } else if text.hasPrefix("HTTP/") {
            self.headers = HTTPHeaders()  // a new status line starts a new block
        } else if let first = text.first, first == " " || first == "\t" {
            // Obsolete line folding (RFC 9112 5.2): servers must not send it; ignored.
        } else if let colon = text.firstIndex(of: ":") {
            self.headers.add(name: String(text[..<colon]), value: text[text.index(after: colon)...].trimmingSpaces())
        }
        return line.count
    }

    private func deliverHead() {
        var status = 0
        _ = sluice_curl_getinfo_long(self.easy, CURLINFO_RESPONSE_CODE, &status)
        self.headDelivered = true
        let headers = self.headers
        self.headers = HTTPHeaders()
        self.state.deliverHead(ResponseHead(status: status, headers: headers))
    }

    private func didReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        if self.idleTimeout != nil { self.lastActivity = ContinuousClock.now }
        guard bytes.count > 0 else { return 0 }
        if !self.headDelivered { self.deliverHead() }
        switch self.state.receive(bytes) {
        case .accepted:
            self.receivedBytes += bytes.count
            return bytes.count
        case .pause:
            self.isPaused = true
            return Int(CURL_WRITEFUNC_PAUSE)
        case .abort:
            return 0
        }
    }
}

/// The earliest deadline the curl thread must wake up for: a lower bound, since transfers'
/// deadlines only move later once set (see `CurlEventLoop.expireTimeouts`).
final class TimerSchedule {
    private(set) var earliest: ContinuousClock.Instant?

    func schedule(_ deadline: ContinuousClock.Instant) {
        if let earliest, earliest <= deadline { return }
        self.earliest = deadline
    }

    func reset(to deadline: ContinuousClock.Instant?) {
        self.earliest = deadline
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return String(text)
    }
}

extension Duration {
    /// Whole milliseconds, rounded up, clamped to what libcurl's `long` options accept.
    var milliseconds: Int {
        let (seconds, attoseconds) = self.components
        guard seconds >= 0 else { return 0 }
        guard seconds < Int64(Int32.max / 1000) else { return Int(Int32.max) }
        return Int(seconds) * 1000 + Int((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}
