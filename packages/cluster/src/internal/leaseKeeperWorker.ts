/**
 * Entry of the lease keeper's worker thread (started by LeaseKeeper.ts). Its own entry point, as main.ts is the
 * node's: it runs the keeper until the node's thread tells it to stop.
 */
import { Effect } from "effect"
import { runKeeper } from "./leaseKeeperThread.js"

Effect.runFork(runKeeper)
