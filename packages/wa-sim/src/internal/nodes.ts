/** Small readers and builders for WhatsApp binary nodes (the XMPP-like stanzas inside the Noise transport). */
import { type BinaryNode, getBinaryNodeChild, getBinaryNodeChildren, S_WHATSAPP_NET } from "@whiskeysockets/baileys"

export type { BinaryNode }

export const SERVER = S_WHATSAPP_NET.slice(1)

export const node = (
  tag: string,
  attrs: Record<string, string | undefined> = {},
  content?: BinaryNode["content"]
): BinaryNode => {
  const defined: Record<string, string> = {}
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined) defined[key] = value
  }
  return content === undefined ? { tag, attrs: defined } : { tag, attrs: defined, content }
}

export const children = (parent: BinaryNode | undefined): Array<BinaryNode> =>
  Array.isArray(parent?.content) ? parent.content : []

export const child = (parent: BinaryNode | undefined, tag: string): BinaryNode | undefined =>
  getBinaryNodeChild(parent, tag)

export const childrenNamed = (parent: BinaryNode | undefined, tag: string): Array<BinaryNode> =>
  getBinaryNodeChildren(parent, tag)

export const bytes = (target: BinaryNode | undefined): Buffer | undefined => {
  const content = target?.content
  if (content instanceof Uint8Array) return Buffer.from(content)
  if (typeof content === "string") return Buffer.from(content, "utf8")
  return undefined
}

export const childBytes = (parent: BinaryNode | undefined, tag: string): Buffer | undefined => bytes(child(parent, tag))

export const childUInt = (parent: BinaryNode | undefined, tag: string): number | undefined => {
  const value = childBytes(parent, tag)
  return value === undefined || value.length === 0 || value.length > 6 ? undefined : value.readUIntBE(0, value.length)
}

export const bigEndian = (value: number, length: number): Buffer => {
  const out = Buffer.alloc(length)
  out.writeUIntBE(value, 0, length)
  return out
}

/** A phone number as the sim takes it: E.164 digits without the plus sign. */
export const isPhoneNumber = (value: string): boolean => /^[1-9][0-9]{5,14}$/.test(value)

export const unixSeconds = (ms: number = Date.now()): string => Math.floor(ms / 1000).toString()

export const iqResult = (request: BinaryNode, content?: Array<BinaryNode>): BinaryNode =>
  node("iq", { from: SERVER, type: "result", id: request.attrs.id }, content)

export const iqError = (request: BinaryNode, code: number, text: string): BinaryNode =>
  node("iq", { from: SERVER, type: "error", id: request.attrs.id }, [node("error", { code: String(code), text })])
