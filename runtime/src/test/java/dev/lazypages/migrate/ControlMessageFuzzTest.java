package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.InvalidProtocolBufferException;
import dev.lazypages.fuzz.Fuzz;
import dev.lazypages.fuzz.Mutator;
import dev.lazypages.fuzz.Mutator.Field;
import dev.lazypages.net.proto.ControlMessage;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;

/**
 * Fuzzes the decoding of migration control messages ({@link NetLink#decode}, migration.proto)
 * and of the fault-latency histogram a PostCopyDone report carries, with messages made by
 * {@link NetLink#encode} and a histogram encoded by HdrHistogram, then mutated. Properties: a
 * message decodes to a {@link Msg} or is refused with an IOException; a histogram decodes or is
 * dropped (null); nothing else escapes, nothing hangs or allocates by an unchecked length.
 */
class ControlMessageFuzzTest {
    private static final List<Msg> VALID = List.of(
            new Msg.PrecheckRequest(MigrationMode.HYBRID, new HostFacts(4096, 0x2e7, Map.of(), Map.of("[vdso]", 8192L),
                    List.of(new HostFacts.FileId("/usr/bin/app", 2049, 42, 1234, true, "open"),
                            new HostFacts.FileId("/tmp/gone", 2049, 43, -1, false, "deleted"))), List.of("uffd-wp-async")),
            new Msg.PrecheckReply(List.of("page size 4096 here, 16384 there")), new Msg.Freeze(),
            new Msg.PageServerReady(7701), new Msg.RoundApplied(2), new Msg.RestoreRequest(true, 7701, "final"), new Msg.RestoreRequest(true, 7701, "final", 256L << 20), new Msg.Running(1234, 12.5, Map.of("restore", 10.0)),
            new Msg.Failed("restore", "no such file"), new Msg.Commit(), new Msg.Abort("source gave up"), new Msg.Ping());

    @Test
    void controlMessagesDecodeOrAreRefusedWithAnIOException() {
        int cases = Fuzz.cases(3000);
        int[] decoded = new int[1];
        int ran = Fuzz.suite("control-messages").run(cases, r -> r.nextInt(10) == 0 ? Mutator.randomBytes(r, 200)
                : Mutator.mutate(r, NetLink.encode(VALID.get(r.nextInt(VALID.size()))).toByteArray(), List.of()), input -> {
            ControlMessage m;
            try {
                m = ControlMessage.parseFrom(input);
            } catch (InvalidProtocolBufferException refusedByTheParser) {
                return;
            }
            try {
                assertNotNull(NetLink.decode(m));
                decoded[0]++;
            } catch (IOException refused) {
                assertTrue(refused.getMessage() != null && !refused.getMessage().contains("\n"), refused.toString());
            }
        });
        assertEquals(cases, ran);
        assertTrue(decoded[0] > cases / 50, decoded[0] + " decoded"); // most mutations are refused by the parser
    }

    @Test
    void aRestoreRequestCarriesThePostCopyBandwidthCapAndOneOutOfRangeIsRefused() throws IOException {
        Msg.RestoreRequest capped = new Msg.RestoreRequest(true, 7701, "final", 256L << 20);
        assertEquals(capped, NetLink.decode(NetLink.encode(capped)));
        assertEquals(0, ((Msg.RestoreRequest) NetLink.decode(NetLink.encode(new Msg.RestoreRequest(true, 7701, "final"))))
                .maxPostcopyBandwidth());
        ControlMessage.Builder b = NetLink.encode(capped).toBuilder();
        b.getRestoreBuilder().setMaxPostcopyBandwidth(-1L); // 2^64 - 1 on the wire
        IOException e = org.junit.jupiter.api.Assertions.assertThrows(IOException.class, () -> NetLink.decode(b.build()));
        assertTrue(e.getMessage().contains("18446744073709551615"), e.getMessage());
    }

    private static final Pattern LATENCY = Pattern.compile("\"fault_latency\": \"([^\"]*)\"");

    /** A report as the destination writes it after post-copy, with a real histogram of {@code seed}. */
    private static String report(SplittableRandom r) {
        Histogram h = new Histogram(3);
        for (int i = 1 + r.nextInt(200); i > 0; i--) {
            h.recordValue(1000 + r.nextInt(1_000_000));
        }
        ByteBuffer b = ByteBuffer.allocate(h.getNeededByteBufferCapacity());
        int n = h.encodeIntoCompressedByteBuffer(b);
        return "{\"background_mib_per_sec\": 812.5, \"fault_latency\": \""
                + Base64.getEncoder().encodeToString(java.util.Arrays.copyOf(b.array(), n)) + "\"}";
    }

    /** The histogram's compressed bytes: cookie, then the length of the deflated contents. */
    private static final List<Field> HISTOGRAM_FIELDS = List.of(Field.be(0, 4), Field.be(4, 4));

    private static byte[] mutateHistogram(SplittableRandom r) {
        String json = report(r);
        Matcher m = LATENCY.matcher(json);
        if (!m.find()) {
            throw new AssertionError(json);
        }
        byte[] hist = Base64.getDecoder().decode(m.group(1));
        byte[] bad = r.nextInt(8) == 0 ? Mutator.randomBytes(r, 100) : Mutator.mutate(r, hist, HISTOGRAM_FIELDS);
        return json.replace(m.group(1), Base64.getEncoder().encodeToString(bad)).getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void aPeersFaultLatencyHistogramDecodesOrIsDropped() {
        int cases = Fuzz.cases(2000);
        int ran = Fuzz.suite("latency-histogram").allocationBudget(8 << 20).run(cases, r -> r.nextInt(6) == 0
                ? Mutator.mutate(r, report(r).getBytes(StandardCharsets.UTF_8), List.of())
                : mutateHistogram(r), input -> {
            Histogram h = NetLink.faultLatency(new String(input, StandardCharsets.UTF_8));
            if (h != null) {
                h.getValueAtPercentile(99.9);
            }
        });
        assertEquals(cases, ran);
    }

    /**
     * Found by {@link #aPeersFaultLatencyHistogramDecodesOrIsDropped} (seed 1885667171979194497,
     * case 1): a compressed length past the end of the bytes made HdrHistogram throw
     * ArrayIndexOutOfBoundsException out of NetLink.receive, ending the migration's state machine.
     */
    @Test
    void aHistogramWhoseCompressedLengthRunsPastItsBytesIsDropped() {
        String json = report(new SplittableRandom(1));
        Matcher m = LATENCY.matcher(json);
        assertTrue(m.find());
        byte[] h = Base64.getDecoder().decode(m.group(1));
        assertNotNull(NetLink.faultLatency(json), "the valid one decodes");
        Mutator.put(h, Field.be(4, 4), h.length + 61);
        assertNull(NetLink.faultLatency(json.replace(m.group(1), Base64.getEncoder().encodeToString(h))));
    }
}
