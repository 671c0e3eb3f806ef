import Causal
import Foundation

extension UCPClient {
    /// Raises the platform's emergency mode at `level` through the broker (`PUT /emergency`);
    /// returns the notice the broker issued.
    ///
    /// - Throws: ``NodeCallError`` when the broker refuses or cannot be reached.
    public func raiseEmergency(_ level: EmergencyLevel, reason: String) async throws -> EmergencyNotice {
        try await http.decode(
            EmergencyNotice.self, .PUT, broker, "/emergency", json: EmergencyRequest(level: level, reason: reason))
    }

    /// Clears the platform's emergency mode through the broker (`DELETE /emergency`); returns the
    /// clearing notice.
    ///
    /// - Throws: ``NodeCallError`` when the broker refuses or cannot be reached.
    public func clearEmergency(reason: String) async throws -> EmergencyNotice {
        var query = URLComponents()
        query.queryItems = [URLQueryItem(name: "reason", value: reason)]
        return try await http.decode(EmergencyNotice.self, .DELETE, broker, "/emergency" + (query.string ?? ""))
    }

    /// The emergency mode as the broker knows it (`GET /emergency`).
    ///
    /// - Throws: ``NodeCallError`` when the broker cannot be reached.
    public func emergency() async throws -> EmergencyView {
        try await http.decode(EmergencyView.self, .GET, broker, "/emergency")
    }
}
