/**
 * Two of our Baileys patches (patches/@whiskeysockets__baileys@7.0.0-rc14.patch) change hot paths for speed and
 * must not change behaviour: the binary-node decoder reads a stanza with one set of reader functions (it made them
 * again for every child node), and timeouts keep the caller's stack without formatting it up front.
 */
import { describe, expect, it } from "@effect/vitest"
import { type BinaryNode, decodeBinaryNode, encodeBinaryNode, promiseTimeout } from "@whiskeysockets/baileys"

describe("Baileys patches", () => {
  it("decodes a nested stanza with hundreds of children to exactly what was encoded", async () => {
    const ids: Array<BinaryNode> = Array.from({ length: 812 }, (_, i) => ({
      tag: "id",
      attrs: {},
      content: Buffer.from([(i + 1) >> 16, ((i + 1) >> 8) & 0xff, (i + 1) & 0xff])
    }))
    const stanza: BinaryNode = {
      tag: "iq",
      attrs: { from: "s.whatsapp.net", type: "result", id: "1234.5678-9" },
      content: [{
        tag: "digest",
        attrs: {},
        content: [
          { tag: "registration", attrs: {}, content: Buffer.from([0, 0, 0, 42]) },
          { tag: "list", attrs: {}, content: ids },
          // Text content comes back as bytes, as WhatsApp's own does.
          { tag: "hash", attrs: { v: "1" }, content: Buffer.from("text content") },
          { tag: "user", attrs: { jid: "628123456789@s.whatsapp.net" } }
        ]
      }]
    }
    const decoded = await decodeBinaryNode(Buffer.from(encodeBinaryNode(stanza)))
    expect(decoded).toEqual(stanza)
  })

  it("rejects a malformed stanza as before", async () => {
    const bytes = Buffer.from(encodeBinaryNode({ tag: "iq", attrs: { id: "1" }, content: [{ tag: "a", attrs: {} }] }))
    await expect(decodeBinaryNode(bytes.subarray(0, bytes.length - 1))).rejects.toThrow("end of stream")
  })

  it("a timeout still carries the stack of the call that waited", async () => {
    const waitingHere = () => promiseTimeout(10, () => {})
    const error = await waitingHere().then(() => undefined, (error: unknown) => error)
    expect(error).toMatchObject({ message: "Timed Out", output: { statusCode: 408 } })
    const stack = (error as { data: { stack: string } }).data.stack
    expect(stack).toContain("waitingHere")
    expect(stack).toContain("BaileysPatches.test.ts")
  })
})
