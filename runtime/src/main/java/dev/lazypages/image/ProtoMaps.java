package dev.lazypages.image;

import com.google.protobuf.ByteString;
import com.google.protobuf.Descriptors.EnumValueDescriptor;
import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Message;
import dev.lazypages.image.proto.ImageProto;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns any protobuf message into Maps, Lists, Strings, Numbers and Booleans for
 * {@code dev.lazypages.stats.Json}, field by field from its descriptor (like CRIU's crit):
 * field names as keys in field-number order, enums by name, unsigned integers unsigned, fields
 * marked {@code [(hex) = true]} as {@code 0x...} strings, and bytes as a short hex prefix with
 * the length instead of all of their contents.
 */
public final class ProtoMaps {
    /** Bytes shown of a bytes field. */
    static final int BYTES_SHOWN = 16;

    private ProtoMaps() {
    }

    /** The fields set in {@code m}, converted. */
    public static Map<String, Object> toMap(Message m) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (var e : m.getAllFields().entrySet()) {
            FieldDescriptor f = e.getKey();
            if (f.isRepeated()) {
                List<Object> list = new ArrayList<>();
                for (Object v : (List<?>) e.getValue()) {
                    list.add(value(f, v));
                }
                out.put(f.getName(), list);
            } else {
                out.put(f.getName(), value(f, e.getValue()));
            }
        }
        return out;
    }

    private static Object value(FieldDescriptor f, Object v) {
        boolean hex = f.getOptions().getExtension(ImageProto.hex);
        return switch (f.getJavaType()) {
            case MESSAGE -> toMap((Message) v);
            case ENUM -> ((EnumValueDescriptor) v).getName();
            case BYTE_STRING -> bytes((ByteString) v);
            case LONG -> hex ? Hex.of((Long) v) : unsigned(f) && (Long) v < 0 ? new BigInteger(Long.toUnsignedString((Long) v)) : v;
            case INT -> hex ? Hex.of(Integer.toUnsignedLong((Integer) v))
                    : unsigned(f) ? Integer.toUnsignedLong((Integer) v) : v;
            default -> v;
        };
    }

    private static boolean unsigned(FieldDescriptor f) {
        return switch (f.getType()) {
            case UINT32, UINT64, FIXED32, FIXED64 -> true;
            default -> false;
        };
    }

    /** E.g. {@code "00ff12... (512 bytes)"}. */
    static String bytes(ByteString b) {
        return Hex.prefix(b.substring(0, Math.min(b.size(), BYTES_SHOWN + 1)).toByteArray(), BYTES_SHOWN)
                + " (" + b.size() + " bytes)";
    }
}
