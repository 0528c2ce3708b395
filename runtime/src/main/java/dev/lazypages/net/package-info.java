/**
 * The network between migration source and destination: a control plane and a page plane, on
 * Netty 4.2 (epoll when available, see {@code Transport}).
 *
 * <h2>Control plane</h2>
 * One TCP connection per migration carrying protobuf {@code ControlMessage}s (migration.proto),
 * varint32-framed with a 2 MiB cap ({@code ControlFrameDecoder}). {@link ControlServer} listens
 * (destination), {@link ControlClient} connects (source); both yield a {@link ControlConnection}
 * once the Hello handshake passed (protocol version, token, roles; refusals surface as
 * {@link HandshakeException} on both sides). State machines use its blocking
 * {@link ControlConnection#receive} and {@link ControlConnection#send}, which apply back-pressure
 * in both directions. {@link DirectoryTransfer} moves image directories as FileChunks with
 * CRC-32C.
 *
 * <h2>Page plane</h2>
 * Fixed binary frames ({@link PageFrameDescriptor}) over two TCP connections per client, FAULT
 * and BULK, authenticated by the migration token. {@link PageServer} (source) serves pages read
 * by a {@link PageProvider} straight into direct network buffers, faults on the I/O loop, bulk on
 * a thread of its own; {@link PageClient} (destination) fetches into {@link dev.lazypages.ffm.PageBuffer}s,
 * blocking, with bulk requests pipelined. {@link dev.lazypages.lazy.RemoteLazySource} puts a
 * client behind a {@link dev.lazypages.lazy.LazyPageServer}.
 *
 * <h2>Security</h2>
 * Both planes authenticate the peer by the migration token (control: in the Hello; pages: in
 * AUTH) and refuse a mismatch on both sides. With {@link Tls#useForThisProcess} (the command
 * lines' {@code --tls}), every connection is TLS ({@link Transport#acceptSide},
 * {@link Transport#connectSide}); without it, everything, the token included, travels in clear.
 *
 * <p>Not here yet: reconnecting a broken page connection.
 */
package dev.lazypages.net;
