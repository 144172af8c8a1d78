import AMQPClient
import Foundation
import Testing

@testable import AMQPEvents

struct Shipment: AMQPEvent {
    static let eventType = "Shipment"
    enum Carrier: String, Codable, CaseIterable { case dhl, ups }
    enum Priority: Int, Codable, CaseIterable { case low = 1, high = 2 }
    struct Parcel: Codable {
        var weightGrams: Int
        var fragile: Bool?
    }
    var id: UUID
    var shippedAt: Date
    var carrier: Carrier
    var priority: Priority?
    var parcels: [Parcel]
    var labels: Set<String>
    var customs: [String: Double]
    var note: String?
    var website: URL?
    var price: Decimal
}

/// A recursive type: it gives its schema itself.
struct Category: Codable, EventSchemaProviding {
    var name: String
    var children: [Category]
    static var jsonSchema: JSONValue { ["type": "object", "properties": ["name": ["type": "string"]], "required": ["name"]] }
}

/// Recursive types that give their schemas, held by an event: through an array, a dictionary
/// and an optional.
struct Catalogue: Codable {
    var root: Category
    var byName: [String: Category]
    var featured: Category?
    var parent: Parent
}

final class Parent: Codable, EventSchemaProviding {
    let name: String
    let parent: Parent?
    let tags: [String: [Parent]]
    static var jsonSchema: JSONValue { ["type": "object", "properties": ["name": ["type": "string"]]] }
}

struct Unprovided: Codable {
    var name: String
    var children: [Unprovided]
}

@Suite("Contracts: JSON Schemas learnt from Codable types")
struct EventSchemaTests {
    @Test("names, types, optionals, nested structs, arrays, sets, dictionaries, enums, dates, UUIDs, URLs and decimals")
    func shapes() throws {
        let schema = try EventSchema.of(Shipment.self)
        let properties = try #require(schema["properties"]?.objectValue)
        #expect(schema["type"] == "object")
        #expect(properties["id"] == ["type": "string", "format": "uuid"])
        #expect(properties["shippedAt"] == ["type": "string", "format": "date-time"])
        #expect(properties["carrier"] == ["type": "string", "enum": ["dhl", "ups"]])
        #expect(properties["priority"] == ["type": "integer", "enum": [1, 2]])
        #expect(
            properties["parcels"]
                == [
                    "type": "array",
                    "items": [
                        "type": "object", "properties": ["weightGrams": ["type": "integer"], "fragile": ["type": "boolean"]],
                        "required": ["weightGrams"],
                    ],
                ])
        #expect(properties["labels"] == ["type": "array", "items": ["type": "string"]])
        #expect(properties["customs"] == ["type": "object", "additionalProperties": ["type": "number"]])
        #expect(properties["note"] == ["type": "string"])
        #expect(properties["website"] == ["type": "string", "format": "uri"])
        #expect(properties["price"] == ["type": "number"])
        // Declaration order; the optionals are not required.
        #expect(schema["required"] == ["id", "shippedAt", "carrier", "parcels", "labels", "customs", "price"])
    }

    @Test("a type can give its own schema; a recursive one that does not is refused with how to fix it")
    func providedAndRecursive() throws {
        #expect(try EventSchema.of(Category.self)["required"] == ["name"])
        let error = #expect(throws: EventError.self) { try EventSchema.of(Unprovided.self) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("EventSchemaProviding") == true)
    }

    @Test("a recursive type that gives its schema can be held by another: in a property, an array, a dictionary, an optional")
    func providedRecursiveNested() throws {
        let schema = try EventSchema.of(Catalogue.self)
        let properties = try #require(schema["properties"]?.objectValue)
        #expect(properties["root"] == Category.jsonSchema)
        #expect(properties["byName"] == ["type": "object", "additionalProperties": Category.jsonSchema])
        #expect(properties["featured"] == Category.jsonSchema)
        #expect(properties["parent"] == Parent.jsonSchema)
        #expect(schema["required"] == ["root", "byName", "parent"])
    }

    @Test("what the JSON coder writes conforms to the schema; a corrupted event does not, and each problem is named")
    func validation() throws {
        let shipment = Shipment(
            id: UUID(), shippedAt: Date(), carrier: .ups, priority: .high, parcels: [.init(weightGrams: 300, fragile: nil)],
            labels: ["a"], customs: ["duty": 1.5], note: nil, website: URL(string: "https://example.com"), price: 9.99)
        let schema = try EventSchema.of(Shipment.self)
        let written = try JSONValue(parsing: JSONEventCoder().encode(shipment))
        #expect(EventSchema.problems(of: written, against: schema) == [])

        guard case .object(var corrupted) = written else { Issue.record("not an object"); return }
        corrupted["carrier"] = "fedex"
        corrupted["shippedAt"] = "yesterday"
        corrupted.removeValue(forKey: "price")
        corrupted["parcels"] = [["weightGrams": "heavy"]]
        let problems = EventSchema.problems(of: .object(corrupted), against: schema)
        print("a corrupted Shipment: \(problems)")
        #expect(problems.count == 4)
        #expect(problems.contains("$: missing required property price"))
        #expect(problems.contains("$.carrier: not one of the allowed values"))
        #expect(problems.contains("$.shippedAt: not an RFC 3339 date-time"))
        #expect(problems.contains("$.parcels[0].weightGrams: expected integer, found string"))
    }
}

/// A type whose own schema is narrower than what decoding would learn.
struct Money: Codable, EventSchemaProviding {
    var text: String
    static var jsonSchema: JSONValue { ["type": "string", "pattern": "^[0-9]+\\.[0-9]{2} [A-Z]{3}$"] }
    init(from decoder: any Decoder) throws { text = try decoder.singleValueContainer().decode(String.self) }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}

struct Invoice: Codable {
    var total: Money
}

extension EventSchemaTests {
    @Test("a nested type's own schema is used, not the one decoding would learn")
    func nestedProvidedSchema() throws {
        #expect(try EventSchema.of(Invoice.self)["properties"]?["total"] == Money.jsonSchema)
    }
}
