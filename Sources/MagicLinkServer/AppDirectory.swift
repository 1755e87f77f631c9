import MagicLinkCore
import MagicLinkProtocol

/// The apps one daemon serves, by id, and the rule for finding a request's app: `params.app`,
/// which may be left out when only one app is configured.
struct AppDirectory: Sendable {
    let authenticators: [String: Authenticator]
    /// In configuration order.
    let ids: [String]

    /// The same apps by the UTF-8 bytes of their ids, for `authenticator(app:)`.
    private let byBytes: [(id: [UInt8], authenticator: Authenticator)]

    init(_ apps: [(id: String, authenticator: Authenticator)]) {
        authenticators = Dictionary(uniqueKeysWithValues: apps.map { ($0.id, $0.authenticator) })
        ids = apps.map(\.id)
        byBytes = apps.map { (Array($0.id.utf8), $0.authenticator) }
    }

    /// `resolve` for the bytes of a plain `params.app` string (nil: not given or null) straight
    /// from the request line; nil where `resolve` would throw. App ids are ASCII (configuration
    /// checks them), so comparing bytes is comparing ids.
    func authenticator(app: UnsafeRawBufferPointer?) -> Authenticator? {
        guard let app else { return byBytes.count == 1 ? byBytes[0].authenticator : nil }
        for entry in byBytes where entry.id.withUnsafeBytes({ $0.elementsEqual(app) }) {
            return entry.authenticator
        }
        return nil
    }

    func resolve(_ params: Params) throws -> Authenticator {
        guard let id = try params.optionalString("app") else {
            guard ids.count == 1, let only = authenticators[ids[0]] else {
                throw WireError.invalidField("params.app", "is required: this daemon serves several apps (\(ids.joined(separator: ", "))).")
            }
            return only
        }
        guard let authenticator = authenticators[id] else {
            throw WireError.invalidField("params.app", "is not an app of this daemon (\(ids.joined(separator: ", "))).")
        }
        return authenticator
    }
}
