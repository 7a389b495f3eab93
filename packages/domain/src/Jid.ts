/**
 * WhatsApp JIDs as the product shows them: a phone number's JID is `<digits>@s.whatsapp.net`.
 */

/** The number (country code first, digits only) when a JID is a phone number's; null otherwise. */
export const phoneOfJid = (jid: string): string | null => jid.match(/^([0-9]{6,15})@s\.whatsapp\.net$/)?.[1] ?? null

/** A one-to-one chat (not a group, a broadcast or a newsletter). */
export const isPersonalJid = (jid: string): boolean => jid.endsWith("@s.whatsapp.net") || jid.endsWith("@lid")
