import Foundation
import SluiceCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SecretMaskerTests {
    func mask(_ s: String) -> String {
        String(decoding: SecretMasker.masked(Array(s.utf8)), as: UTF8.self)
    }

    @Test func masksValuesOfSecretKeysAtAnyDepthEvenInBrokenJSON() {
        #expect(mask(#"{"api_key": "sk-abc123xyz", broken"#) == #"{"api_key": "***", broken"#)
        #expect(mask(#"{"a": {"b": [{"password":"hunter2"}]}}"#) == #"{"a": {"b": [{"password":"***"}]}}"#)
        #expect(mask(#"{"apiKey":"k1","x-api-key" : "k2","Authorization":"Basic dXNlcjpwdw=="}"#)
            == #"{"apiKey":"***","x-api-key" : "***","Authorization":"***"}"#)
        #expect(mask(#"{"client_secret": "c", "access_token": "t", "OPENAI_API_KEY": "o"}"#)
            == #"{"client_secret": "***", "access_token": "***", "OPENAI_API_KEY": "***"}"#)
        // Never closed: masked to the end.
        #expect(mask(#"{"token": "abc"#) == #"{"token": "***"#)
        // A job escaped inside another string.
        #expect(mask(#"{"body": "{\"api_key\": \"inner\", \"n\": 1}"}"#) == #"{"body": "{\"api_key\": \"***\", \"n\": 1}"}"#)
        // Not JSON at all.
        #expect(mask("api_key=abc123&model=m") == "api_key=***&model=m")
        #expect(mask("token=YWJj== next") == "token=*** next")
        #expect(mask("Authorization: Bearer abc.def-ghi\nnext") == "Authorization: Bearer ***\nnext")
        // A stray escape pairs the quotes differently than they seem: the key inside the
        // first masked value still has its own value masked.
        #expect(mask(#"{"password": "x\"api_key": "planted"}"#) == #"{"password": "***": "***"}"#)
    }

    @Test func masksKeyAndBearerLookingWordsAnywhere() {
        #expect(mask(#"{"content": "my key is sk-proj-abcdef123456 ok"}"#) == #"{"content": "my key is sk-*** ok"}"#)
        #expect(mask("sk-ant-api03-AbCdEf_123-xyz") == "sk-***")
        #expect(mask(#"["Bearer eyJhbGciOi.J9.x", "bearer   tok"]"#) == #"["Bearer ***", "bearer   ***"]"#)
    }

    @Test func leavesWhatIsNotASecret() {
        let job = #"{"id":"j","model":"m","parameters":{"max_tokens":256,"temperature":0.7},"messages":[{"role":"user","content":"ask a task-based risk-free question"}],"token":null}"#
        #expect(mask(job) == job)
        #expect(mask("") == "")
        // A key name that is a value, not followed by `:` or `=`.
        #expect(mask(#"{"kind": "token", "n": 1}"#) == #"{"kind": "token", "n": 1}"#)
        // Too short to be a key.
        #expect(mask("sk-abc") == "sk-abc")
    }

    @Test func aMaskedParseableJobStaysJSON() throws {
        let masked = SecretMasker.masked(Array(#"{"id": "j", "api_key": "sk-secret-value", "messages": 5}"#.utf8))
        let value = try JSON.decode(JSONValue.self, from: masked)
        #expect(value["api_key"] == "***")
        #expect(value["messages"] == 5)
    }

    /// Arbitrary bytes around a secret planted in one of the shapes it comes in: the
    /// masker never traps, and the secret never survives.
    @Test func aPlantedSecretNeverSurvivesAndNothingTraps() {
        var rng = FuzzTests.Rng(state: FuzzTests.seed &+ 11)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        let keys = ["api_key", "apiKey", "x-api-key", "Authorization", "password", "client_secret", "token", "SECRET"]
        let shapes: [(String, String) -> String] = [
            { k, s in #""\#(k)": "\#(s)""# },
            { k, s in #""\#(k)":"\#(s)"#  },
            { k, s in #"{"outer": {"\#(k)" : '\#(s)'}}"# },
            { k, s in #"\"\#(k)\": \"\#(s)\""# },
            { k, s in "\(k)=\(s)" },
            { k, s in "\(k): \(s)" },
            { _, s in " sk-\(s)" },
            { _, s in " sk-ant-api03-\(s)" },
            { _, s in " Bearer \(s)" },
            { k, s in #""\#(k)": "Bearer \#(s)""# },
        ]
        for i in 0..<FuzzTests.iterations {
            let secret = Array((0..<Int.random(in: 12...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            let shape = shapes[i % shapes.count]
            let planted = Array(shape(keys.randomElement(using: &rng)!, String(decoding: secret, as: UTF8.self)).utf8)
            let noise = { (rng: inout FuzzTests.Rng) -> [UInt8] in
                i % 3 == 0
                    ? (0..<Int.random(in: 0...48, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    : FuzzTests.mutate(Array(FuzzTests.corpus.randomElement(using: &rng)!.utf8), &rng)
            }
            // The planted shape starts after a byte that ends any word before it.
            let input = noise(&rng) + [0x20] + planted + noise(&rng)
            let out = SecretMasker.masked(input)
            if out.firstRange(of: secret) != nil {
                Issue.record("the secret survived in \(String(decoding: input, as: UTF8.self).debugDescription)")
                return
            }
            // And arbitrary bytes alone, through the same code.
            _ = SecretMasker.masked(noise(&rng))
        }
    }

    /// Input built to make a naive masker rescan is masked in linear time: eight times the
    /// input takes about eight times as long (a rescan would take sixty-four). A ratio,
    /// best of three, so a loaded machine slows both sides alike.
    @Test func largeHostileInputIsMaskedInLinearTime() {
        let shapes = [#"token:""#, "token:'", #"token:\""#, "token:", "token=", "x=token=", "Bearer ", "Bearer x=", "sk-", #"\""#]
        // This thread's CPU time, not the wall clock: a loaded machine preempting the test
        // must not look like quadratic work. Best of five.
        func threadCPUSeconds() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        func seconds(_ input: [UInt8]) -> Double {
            var best = Double.infinity
            for _ in 0..<5 {
                let start = threadCPUSeconds()
                _ = SecretMasker.masked(input)
                best = min(best, threadCPUSeconds() - start)
            }
            return best
        }
        for shape in shapes {
            let small = Array(String(repeating: shape, count: (32 << 10) / shape.utf8.count).utf8)
            let large = Array(String(repeating: shape, count: (256 << 10) / shape.utf8.count).utf8)
            let ratio = seconds(large) / max(seconds(small), 1e-6)
            #expect(ratio < 24, "\(shape): 8x the input took \(ratio)x as long")
        }
    }
}
