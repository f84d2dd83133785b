import HTTPTypes
import Hummingbird
import SluiceCore

extension Request {
    /// The W3C trace context the client sent (`traceparent`, `tracestate`); nil when it
    /// sent none or a malformed one (the job then starts a trace of its own).
    var traceContext: TraceHeaders? {
        guard let parent = headers[HTTPField.Name.traceparent] else { return nil }
        return TraceHeaders(traceparent: Array(parent.utf8), tracestate: headers[HTTPField.Name.tracestate].map { Array($0.utf8) })
    }
}

extension HTTPField.Name {
    static let traceparent = Self(TraceHeaders.traceparentName)!
    static let tracestate = Self(TraceHeaders.tracestateName)!
}
