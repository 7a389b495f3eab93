/**
 * What the sim knows about accounts (virtual phones) and their linked devices, and how that is written to the state
 * file. Device records keep everything a client uploads (registration id, identity key, signed and one-time prekeys)
 * because messaging encrypts against them.
 */
import type { KeyPair } from "@whiskeysockets/baileys"
import { Schema } from "effect"

export interface SignedPreKey {
  readonly id: number
  readonly publicKey: Buffer
  readonly signature: Buffer
}

/** The Signal key bundle of one device, as uploaded at registration and by `encrypt` iqs. */
export interface KeyBundle {
  registrationId: number
  identityKey: Buffer
  signedPreKey: SignedPreKey
  /** One-time prekeys not handed out yet, by id. */
  readonly preKeys: Map<number, Buffer>
}

/** A virtual phone: one WhatsApp account that can link companion devices. */
export interface Account {
  readonly phoneNumber: string
  /** The user part of the account's LID (`<lidUser>@lid`). */
  readonly lidUser: string
  /** The account (ADV) identity key the phone signs companion devices with. */
  readonly identity: KeyPair
  nextDeviceId: number
  readonly createdAt: number
}

export interface Device {
  /** `<phone>:<device>@s.whatsapp.net` */
  readonly jid: string
  /** `<lidUser>:<device>@lid` */
  readonly lid: string
  readonly phoneNumber: string
  readonly deviceId: number
  readonly keyIndex: number
  /** The client's static Noise key: a login must come from the same key (like WhatsApp, or it is a 401). */
  readonly noiseKey: Buffer
  readonly platform: string
  readonly linkedAt: number
  readonly keys: KeyBundle
}

const Bytes = Schema.Uint8ArrayFromBase64

const KeyPairJson = Schema.Struct({ public: Bytes, private: Bytes })

const AccountJson = Schema.Struct({
  phoneNumber: Schema.String,
  lidUser: Schema.String,
  identity: KeyPairJson,
  nextDeviceId: Schema.Int,
  createdAt: Schema.Number
})

const DeviceJson = Schema.Struct({
  jid: Schema.String,
  lid: Schema.String,
  phoneNumber: Schema.String,
  deviceId: Schema.Int,
  keyIndex: Schema.Int,
  noiseKey: Bytes,
  platform: Schema.String,
  linkedAt: Schema.Number,
  registrationId: Schema.Int,
  identityKey: Bytes,
  signedPreKey: Schema.Struct({ id: Schema.Int, publicKey: Bytes, signature: Bytes })
})

/** Version 1 of the state file. One-time prekeys are kept in their own files (see `toStateJson`). */
export const StateJson = Schema.Struct({
  version: Schema.Literal(1),
  root: KeyPairJson,
  accounts: Schema.Array(AccountJson),
  devices: Schema.Array(DeviceJson)
})
export type StateJson = typeof StateJson.Type

export const StateJsonFromString = Schema.parseJson(StateJson)

export interface Snapshot {
  readonly root: KeyPair
  readonly accounts: ReadonlyArray<Account>
  readonly devices: ReadonlyArray<Device>
}

const keyPairFromJson = (pair: typeof KeyPairJson.Type): KeyPair => ({
  public: Buffer.from(pair.public),
  private: Buffer.from(pair.private)
})

/**
 * One-time prekeys are left out: a device uploads 812 of them, which would make this file grow by tens of
 * kilobytes per device and be rewritten on every change. They are kept per device beside it (see
 * `StateFile.makePreKeyFiles`).
 */
export const toStateJson = (snapshot: Snapshot): StateJson => ({
  version: 1,
  root: snapshot.root,
  accounts: snapshot.accounts.map((account) => ({
    phoneNumber: account.phoneNumber,
    lidUser: account.lidUser,
    identity: account.identity,
    nextDeviceId: account.nextDeviceId,
    createdAt: account.createdAt
  })),
  devices: snapshot.devices.map((device) => ({
    jid: device.jid,
    lid: device.lid,
    phoneNumber: device.phoneNumber,
    deviceId: device.deviceId,
    keyIndex: device.keyIndex,
    noiseKey: device.noiseKey,
    platform: device.platform,
    linkedAt: device.linkedAt,
    registrationId: device.keys.registrationId,
    identityKey: device.keys.identityKey,
    signedPreKey: device.keys.signedPreKey
  }))
})

export const fromStateJson = (json: StateJson): Snapshot => ({
  root: keyPairFromJson(json.root),
  accounts: json.accounts.map((account) => ({ ...account, identity: keyPairFromJson(account.identity) })),
  devices: json.devices.map((device) => ({
    jid: device.jid,
    lid: device.lid,
    phoneNumber: device.phoneNumber,
    deviceId: device.deviceId,
    keyIndex: device.keyIndex,
    noiseKey: Buffer.from(device.noiseKey),
    platform: device.platform,
    linkedAt: device.linkedAt,
    keys: {
      registrationId: device.registrationId,
      identityKey: Buffer.from(device.identityKey),
      signedPreKey: {
        id: device.signedPreKey.id,
        publicKey: Buffer.from(device.signedPreKey.publicKey),
        signature: Buffer.from(device.signedPreKey.signature)
      },
      preKeys: new Map()
    }
  }))
})
