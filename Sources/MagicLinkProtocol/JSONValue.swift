/// A JSON document as the wire protocol sees it.
///
/// Integers and other numbers are kept apart so that request ids (integers on the wire) come back
/// exactly as they were sent. Strings compare by their exact UTF-8 bytes: JSON names and strings
/// are sequences of code points, whereas Swift's `String ==` treats canonically equivalent
/// strings ("é" and "e\u{301}") as equal.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits `Int64`.
    case integer(Int64)
    /// Any other number. Always finite when produced by `JSONParser`.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

extension JSONValue: Equatable {
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.integer(a), .integer(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.string(a), .string(b)): return jsonStringsEqual(a, b)
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)): return a == b
        default: return false
        }
    }
}

/// Code-point (byte) equality, not Swift's canonical equivalence.
func jsonStringsEqual(_ a: String, _ b: String) -> Bool {
    // `utf8.count` is O(1) for native strings, and most unequal keys differ in length.
    guard a.utf8.count == b.utf8.count else { return false }
    var a = a
    var b = b
    return a.withUTF8 { a in b.withUTF8 { b in a.elementsEqual(b) } }
}

/// Members in document order (the writer keeps that order). Lookup is linear: objects here are small.
///
/// Two objects are equal when they hold the same members, in any order (RFC 8259 objects are
/// unordered); compare `serialized()` bytes if order matters.
public struct JSONObject: Sendable {
    public private(set) var members: [(key: String, value: JSONValue)]

    public init() {
        members = []
    }

    /// Later members with an already-seen key replace the earlier value (like the subscript
    /// setter), so an object never holds a key twice and always serializes to parseable JSON.
    public init(_ members: [(String, JSONValue)]) {
        self.members = []
        self.members.reserveCapacity(members.count)
        for (key, value) in members {
            self[key] = value
        }
    }

    /// For the parser, which has already refused duplicate keys.
    init(uncheckedMembers: [(key: String, value: JSONValue)]) {
        members = uncheckedMembers
    }

    /// Setting a value replaces the member in place or appends it; setting `nil` removes the
    /// member. To store JSON null write `object["k"] = .null` (a bare `nil` means "remove").
    public subscript(key: String) -> JSONValue? {
        get {
            if let index = index(forKey: key) { return members[index].value }
            return nil
        }
        set {
            if let index = index(forKey: key) {
                if let newValue {
                    members[index].value = newValue
                } else {
                    members.remove(at: index)
                }
            } else if let newValue {
                members.append((key: key, value: newValue))
            }
        }
    }

    public var isEmpty: Bool { members.isEmpty }
    public var count: Int { members.count }

    func index(forKey key: String) -> Int? {
        members.firstIndex { jsonStringsEqual($0.key, key) }
    }
}

extension JSONObject: Equatable {
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        // Common case: same order.
        var sameOrder = true
        for (l, r) in zip(lhs.members, rhs.members)
        where !(jsonStringsEqual(l.key, r.key) && l.value == r.value) {
            sameOrder = false
            break
        }
        if sameOrder { return true }
        // Order-insensitive; matched members are marked so repeated keys (possible only through
        // `init(uncheckedMembers:)`) are compared as a multiset.
        var used = [Bool](repeating: false, count: rhs.members.count)
        outer: for l in lhs.members {
            for (index, r) in rhs.members.enumerated()
            where !used[index] && jsonStringsEqual(l.key, r.key) && l.value == r.value {
                used[index] = true
                continue outer
            }
            return false
        }
        return true
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    /// A repeated key in a literal is a programming error, as with `Dictionary`.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init()
        members.reserveCapacity(elements.count)
        for (key, value) in elements {
            precondition(index(forKey: key) == nil, "JSONObject literal repeats the key \"\(key)\"")
            members.append((key: key, value: value))
        }
    }
}

extension JSONObject: CustomStringConvertible {
    public var description: String { JSONValue.object(self).jsonString }
}

// MARK: - Literals

extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension JSONValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .integer(value) }
}

extension JSONValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension JSONValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
}

extension JSONValue: ExpressibleByNilLiteral {
    public init(nilLiteral: ()) { self = .null }
}

// MARK: - Accessors

extension JSONValue {
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// Only `.integer`: a number written with a fraction or exponent is not an integer on the wire.
    public var int64Value: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }
}

extension JSONValue: CustomStringConvertible {
    public var description: String { jsonString }
}
