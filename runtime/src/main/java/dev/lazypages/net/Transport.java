package dev.lazypages.net;

import io.netty.channel.EventLoopGroup;
import io.netty.channel.IoHandlerFactory;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.ServerChannel;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.util.concurrent.TimeUnit;

/**
 * The Netty transport of this package: epoll ({@code new MultiThreadIoEventLoopGroup(
 * EpollIoHandler.newFactory())}) when the native transport loads, else NIO, with the reason
 * logged once.
 *
 * <p>netty-transport-native-epoll is a runtime-scope dependency (see the parent pom), so its
 * classes are looked up by name here, once, instead of being compiled against.
 */
final class Transport {
    private static final System.Logger LOG = System.getLogger(Transport.class.getName());
    private static final Epoll EPOLL = probe();

    private record Epoll(IoHandlerFactory factory, Class<? extends io.netty.channel.Channel> socket,
                         Class<? extends ServerChannel> server) {
    }

    private Transport() {
    }

    @SuppressWarnings("unchecked")
    private static Epoll probe() {
        Throwable why;
        try {
            Class<?> epoll = Class.forName("io.netty.channel.epoll.Epoll");
            if ((Boolean) epoll.getMethod("isAvailable").invoke(null)) {
                IoHandlerFactory f = (IoHandlerFactory) Class.forName("io.netty.channel.epoll.EpollIoHandler")
                        .getMethod("newFactory").invoke(null);
                return new Epoll(f,
                        (Class<? extends io.netty.channel.Channel>) Class.forName("io.netty.channel.epoll.EpollSocketChannel"),
                        (Class<? extends ServerChannel>) Class.forName("io.netty.channel.epoll.EpollServerSocketChannel"));
            }
            why = (Throwable) epoll.getMethod("unavailabilityCause").invoke(null);
        } catch (ReflectiveOperationException | LinkageError e) {
            why = e;
        }
        LOG.log(System.Logger.Level.WARNING, "native epoll transport unavailable, falling back to NIO: {0}",
                String.valueOf(why));
        return null;
    }

    /** True when the epoll transport is in use. */
    static boolean epoll() {
        return EPOLL != null;
    }

    /** An event loop group of {@code threads} daemon threads named {@code name-N}. */
    static EventLoopGroup group(String name, int threads) {
        DefaultThreadFactory tf = new DefaultThreadFactory(name, true);
        return new MultiThreadIoEventLoopGroup(threads, tf, EPOLL != null ? EPOLL.factory : NioIoHandler.newFactory());
    }

    static Class<? extends io.netty.channel.Channel> socketChannel() {
        return EPOLL != null ? EPOLL.socket : NioSocketChannel.class;
    }

    static Class<? extends ServerChannel> serverChannel() {
        return EPOLL != null ? EPOLL.server : NioServerSocketChannel.class;
    }

    static void shutdown(EventLoopGroup group) {
        group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    }
}
