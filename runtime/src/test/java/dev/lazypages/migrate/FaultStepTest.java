package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.cli.MigrateCommand;
import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** The fault steps' names, and {@code migrate --inject-fault}: hidden, checked before anything runs. */
class FaultStepTest {
    @Test
    void everyStepHasADashedNameThatParsesBack() {
        for (FaultStep f : FaultStep.values()) {
            if (f != FaultStep.NONE) {
                assertEquals(new FaultStep.At(f, 1), FaultStep.parse(f.cliName()));
            }
        }
        assertEquals(new FaultStep.At(FaultStep.ROUND, 3), FaultStep.parse("round:3"));
        assertEquals(new FaultStep.At(FaultStep.AFTER_ROUND, 2), FaultStep.parse("AFTER-ROUND:2"));
        assertEquals("final-dump", FaultStep.FINAL_DUMP.cliName());
    }

    @Test
    void badStepsAreRefusedNamingTheSteps() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> FaultStep.parse("frezee"));
        assertTrue(e.getMessage().contains("unknown fault step 'frezee'; one of: handshake, precheck, round,"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> FaultStep.parse("round:0"));
        assertThrows(IllegalArgumentException.class, () -> FaultStep.parse("round:x"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> FaultStep.parse("commit:2")).getMessage()
                .contains("takes no round number"));
    }

    @Test
    void theOptionIsHiddenFromHelpAndABadStepIsAUsageError() {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new MigrateCommand());
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        assertEquals(0, cl.execute("--help"));
        assertTrue(out.toString().contains("--to"), out.toString());
        assertFalse(out.toString().contains("inject-fault"), out.toString());
        int rc = cl.execute("-t", "1", "--to", "127.0.0.1:1", "--inject-fault", "nowhere");
        assertEquals(2, rc, err.toString());
        assertTrue(err.toString().contains("unknown fault step 'nowhere'"), err.toString());
    }
}
