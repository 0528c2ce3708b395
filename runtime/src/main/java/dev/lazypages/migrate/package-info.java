/**
 * Live migration: the source state machine ({@link dev.lazypages.migrate.MigrationSource}), the
 * destination ({@link dev.lazypages.migrate.MigrationDestination}) and its daemon
 * ({@link dev.lazypages.migrate.ServeDaemon}), the pre-checks ({@link dev.lazypages.migrate.Prechecks})
 * and the report ({@link dev.lazypages.migrate.MigrationReport}). The protocol sequence is in
 * {@link dev.lazypages.migrate.Msg}; {@link dev.lazypages.migrate.NetLink} and
 * {@link dev.lazypages.migrate.NetPagePlane} map it onto dev.lazypages.net.
 */
package dev.lazypages.migrate;
