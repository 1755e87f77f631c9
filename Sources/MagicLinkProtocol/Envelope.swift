/// A decoded request line: `{"id": …, "op": "…", "params": {…}}`.
public struct Request: Sendable {
    /// `.string`, `.integer` or `.null` (absent).
    public var id: JSONValue
    public var op: String
    public var params: JSONObject

    public init(id: JSONValue = .null, op: String, params: JSONObject = JSONObject()) {
        self.id = id
        self.op = op
        self.params = params
    }
}

/// Turns request lines into `Request`s and replies into lines. The rules are Protocol/README.md
/// sections 1–3.
public enum Envelope {
    public static let maximumIDBytes = 256
    public static let maximumSafeInteger: Int64 = 9_007_199_254_740_991

    /// A failed decode: the error to send, and the id to send it with (null when the id itself
    /// could not be read).
    public struct DecodeFailure: Error, Sendable {
        public var id: JSONValue
        public var error: WireError
    }

    /// Decodes one line (without its line feed; a trailing CR is tolerated). `knownOps` decides
    /// between `unknown_op` and looking at `params` (the op is checked first).
    public static func decode(_ line: UnsafeRawBufferPointer, knownOps: Set<String>) -> Result<Request, DecodeFailure> {
        var bytes = line
        if let last = bytes.last, last == UInt8(ascii: "\r") {
            bytes = UnsafeRawBufferPointer(rebasing: bytes.dropLast())
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            return .failure(DecodeFailure(id: .null, error: WireError(.invalidRequest, "The line is not valid JSON: \(error.reason).")))
        }
        guard case .object(let object) = value else {
            return .failure(DecodeFailure(id: .null, error: WireError(.invalidRequest, "A request must be a JSON object.")))
        }

        let id: JSONValue
        switch object["id"] {
        case nil, .null?:
            id = .null
        case .string(let text)? where text.utf8.count <= maximumIDBytes:
            id = .string(text)
        case .integer(let number)? where number >= -maximumSafeInteger && number <= maximumSafeInteger:
            id = .integer(number)
        default:
            return .failure(DecodeFailure(id: .null, error: .invalidField(
                "id", "must be a string of at most \(maximumIDBytes) bytes or an integer within ±(2^53−1).")))
        }

        guard case .string(let op)? = object["op"] else {
            return .failure(DecodeFailure(id: id, error: .invalidField("op", object["op"] == nil ? "is required." : "must be a string.")))
        }
        guard knownOps.contains(op) else {
            return .failure(DecodeFailure(id: id, error: WireError(.unknownOp, "Unknown op.", details: ["op": .string(op)])))
        }

        let params: JSONObject
        switch object["params"] {
        case nil:
            params = JSONObject()
        case .object(let given)?:
            params = given
        default:
            return .failure(DecodeFailure(id: id, error: .invalidField("params", "must be an object.")))
        }
        return .success(Request(id: id, op: op, params: params))
    }

    /// `{"id":…,"ok":true,"result":{…}}` plus the line feed.
    public static func success(id: JSONValue, result: JSONObject) -> [UInt8] {
        line(JSONObject([("id", id), ("ok", .bool(true)), ("result", .object(result))]))
    }

    /// The same line for a result serialized once ahead (`hello`'s never changes).
    public static func success(id: JSONValue, serializedResult result: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(result.count + 64)
        JSONWriter.append("{\"id\":", to: &bytes)
        id.serialize(into: &bytes)
        JSONWriter.append(",\"ok\":true,\"result\":", to: &bytes)
        bytes.append(contentsOf: result)
        JSONWriter.append("}\n", to: &bytes)
        return bytes
    }

    /// `session`'s success line, written straight into one buffer: the reply every page of every
    /// app waits for skips building a `JSONObject` (same bytes as `success(id:result:)` with
    /// `sessionResult.object`).
    public static func success(id: JSONValue, sessionResult: SessionResult) -> [UInt8] {
        var (userID, email) = (sessionResult.userID, sessionResult.email)
        return userID.withUTF8 { userID in
            email.withUTF8 { email in
                success(id: id, sessionUserID: UnsafeRawBufferPointer(userID), email: UnsafeRawBufferPointer(email),
                        expiresAt: sessionResult.expiresAt, idleExpiresAt: sessionResult.idleExpiresAt)
            }
        }
    }

    /// The same line from the user's id and email as UTF-8 bytes (the session cache's own).
    public static func success(id: JSONValue, sessionUserID userID: UnsafeRawBufferPointer, email: UnsafeRawBufferPointer,
                               expiresAt: Int64, idleExpiresAt: Int64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(160 + email.count)
        writeSessionSuccess(id: id, userID: userID, email: email, expiresAt: expiresAt, idleExpiresAt: idleExpiresAt, to: &bytes)
        return bytes
    }

    /// The same line written into `buffer`, which holds at least
    /// `sessionSuccessCapacity(id:userIDCount:emailCount:)` bytes (the cached `session` writes
    /// its reply straight into the buffer it is sent from). Returns the line's length.
    public static func writeSessionSuccess(id: JSONValue, sessionUserID userID: UnsafeRawBufferPointer, email: UnsafeRawBufferPointer,
                                           expiresAt: Int64, idleExpiresAt: Int64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var output = JSONBufferOutput(buffer)
        writeSessionSuccess(id: id, userID: userID, email: email, expiresAt: expiresAt, idleExpiresAt: idleExpiresAt, to: &output)
        return output.count
    }

    /// At least the length of `session`'s success line for an id, a user id of `userIDCount`
    /// bytes and an email of `emailCount`: every byte of a string may take six (`\u00XX`).
    public static func sessionSuccessCapacity(id: JSONValue, userIDCount: Int, emailCount: Int) -> Int {
        let fixed = #"{"id":,"ok":true,"result":{"user":{"id":"","email":""},"expires_at":,"idle_expires_at":}}"#.utf8.count + 1
        return fixed + id.serializedCountBound + 6 * (userIDCount + emailCount) + 2 * 20
    }

    private static func writeSessionSuccess<Output: JSONOutput>(id: JSONValue, userID: UnsafeRawBufferPointer, email: UnsafeRawBufferPointer,
                                                                 expiresAt: Int64, idleExpiresAt: Int64, to bytes: inout Output) {
        JSONWriter.append("{\"id\":", to: &bytes)
        id.write(to: &bytes)
        JSONWriter.append(",\"ok\":true,\"result\":", to: &bytes)
        SessionResult.serialize(userID: userID, email: email, expiresAt: expiresAt, idleExpiresAt: idleExpiresAt, into: &bytes)
        JSONWriter.append("}\n", to: &bytes)
    }

    /// `{"id":…,"ok":false,"error":{…}}` plus the line feed.
    public static func failure(id: JSONValue, error: WireError) -> [UInt8] {
        let body = JSONObject([
            ("code", .string(error.code.rawValue)),
            ("message", .string(error.message)),
            ("retryable", .bool(error.code.isRetryable)),
            ("details", .object(error.details)),
        ])
        return line(JSONObject([("id", id), ("ok", .bool(false)), ("error", .object(body))]))
    }

    private static func line(_ object: JSONObject) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)
        JSONValue.object(object).serialize(into: &bytes)
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }
}

/// Typed access to `params` members, with `invalid_request` errors that name the member.
public struct Params: Sendable {
    public let object: JSONObject

    public init(_ object: JSONObject) { self.object = object }

    public func requiredString(_ name: String) throws(WireError) -> String {
        guard let value = object[name] else { throw .invalidField("params.\(name)", "is required.") }
        guard case .string(let text) = value else { throw .invalidField("params.\(name)", "must be a string.") }
        return text
    }

    /// Absent and `null` both mean "not given".
    public func optionalString(_ name: String) throws(WireError) -> String? {
        switch object[name] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw .invalidField("params.\(name)", "must be a string.")
        }
    }

    /// Absent and `null` both mean `false`.
    public func optionalBool(_ name: String) throws(WireError) -> Bool {
        switch object[name] {
        case nil, .null?: return false
        case .bool(let value)?: return value
        default: throw .invalidField("params.\(name)", "must be true or false.")
        }
    }
}

/// The result of `session` (Protocol/README.md): who is signed in and until when.
public struct SessionResult: Sendable, Equatable {
    public var userID: String
    public var email: String
    public var expiresAt: Int64
    public var idleExpiresAt: Int64

    public init(userID: String, email: String, expiresAt: Int64, idleExpiresAt: Int64) {
        self.userID = userID
        self.email = email
        self.expiresAt = expiresAt
        self.idleExpiresAt = idleExpiresAt
    }

    /// The result as a JSON object, members in wire order.
    public var object: JSONObject {
        [
            "user": .object(["id": .string(userID), "email": .string(email)]),
            "expires_at": .integer(expiresAt),
            "idle_expires_at": .integer(idleExpiresAt),
        ]
    }

    /// Appends the same JSON as `object` would serialize to.
    public func serialize(into bytes: inout [UInt8]) {
        var (userID, email) = (self.userID, self.email)
        userID.withUTF8 { userID in
            email.withUTF8 { email in
                Self.serialize(userID: UnsafeRawBufferPointer(userID), email: UnsafeRawBufferPointer(email), expiresAt: expiresAt,
                               idleExpiresAt: idleExpiresAt, into: &bytes)
            }
        }
    }

    /// The same from the id's and the email's UTF-8 bytes.
    static func serialize<Output: JSONOutput>(userID: UnsafeRawBufferPointer, email: UnsafeRawBufferPointer, expiresAt: Int64,
                                              idleExpiresAt: Int64, into bytes: inout Output) {
        JSONWriter.append("{\"user\":{\"id\":", to: &bytes)
        JSONWriter.appendString(utf8: userID, to: &bytes)
        JSONWriter.append(",\"email\":", to: &bytes)
        JSONWriter.appendString(utf8: email, to: &bytes)
        JSONWriter.append("},\"expires_at\":", to: &bytes)
        JSONWriter.appendInteger(expiresAt, to: &bytes)
        JSONWriter.append(",\"idle_expires_at\":", to: &bytes)
        JSONWriter.appendInteger(idleExpiresAt, to: &bytes)
        bytes.append(UInt8(ascii: "}"))
    }
}
